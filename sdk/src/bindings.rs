//! The bindings of the one world the crate was built for (its feature), made
//! by wit-bindgen from the WIT shipped in `wit/`: tarkd's `tark:plugin@0.1.x`
//! (`wit/tark.wit`), or with `published` tark's unversioned contract
//! (`wit/published/tark.wit`, which, unlike the file in tark's source, parses
//! with wit-bindgen). Each module re-exports its world's `Guest` trait and
//! types; its export macro (`export_tool!`, ...) is at the crate root.

#[cfg(not(any(
    feature = "auth",
    feature = "tool",
    feature = "provider",
    feature = "streaming-provider",
    feature = "hook",
    feature = "channel"
)))]
compile_error!(
    "tark-plugin-sdk: enable the feature of your plugin's world: auth, tool, provider, streaming-provider, hook or channel"
);

#[cfg(all(feature = "hook", feature = "published"))]
compile_error!("tark-plugin-sdk: tark's published WIT has no hook world; drop `published`");

#[cfg(all(feature = "auth", not(feature = "published")))]
#[allow(missing_docs, clippy::all)]
pub mod auth {
    wit_bindgen::generate!({
        world: "auth-world",
        path: "wit/tark.wit",
        pub_export_macro: true,
        export_macro_name: "export_auth",
        default_bindings_module: "tark_plugin_sdk::auth",
    });
    pub use exports::tark::plugin::auth_plugin::*;
}
#[cfg(all(feature = "auth", not(feature = "published")))]
pub(crate) use auth as world;
#[cfg(all(feature = "auth", not(feature = "published")))]
pub use auth::export_auth;

#[cfg(all(feature = "tool", not(feature = "published")))]
#[allow(missing_docs, clippy::all)]
pub mod tool {
    wit_bindgen::generate!({
        world: "tool-world",
        path: "wit/tark.wit",
        pub_export_macro: true,
        export_macro_name: "export_tool",
        default_bindings_module: "tark_plugin_sdk::tool",
    });
    pub use exports::tark::plugin::tool_plugin::*;
}
#[cfg(all(feature = "tool", not(feature = "published")))]
pub(crate) use tool as world;
#[cfg(all(feature = "tool", not(feature = "published")))]
pub use tool::export_tool;

#[cfg(all(feature = "provider", not(feature = "streaming-provider"), not(feature = "published")))]
#[allow(missing_docs, clippy::all)]
pub mod provider {
    wit_bindgen::generate!({
        world: "provider-world",
        path: "wit/tark.wit",
        pub_export_macro: true,
        export_macro_name: "export_provider",
        default_bindings_module: "tark_plugin_sdk::provider",
    });
    pub use exports::tark::plugin::provider_plugin::*;
}
#[cfg(all(feature = "provider", not(feature = "streaming-provider"), not(feature = "published")))]
pub(crate) use provider as world;
#[cfg(all(feature = "provider", not(feature = "streaming-provider"), not(feature = "published")))]
pub use provider::export_provider;

#[cfg(all(feature = "streaming-provider", not(feature = "published")))]
#[allow(missing_docs, clippy::all)]
pub mod provider {
    wit_bindgen::generate!({
        world: "streaming-provider-world",
        path: "wit/tark.wit",
        pub_export_macro: true,
        export_macro_name: "export_provider",
        default_bindings_module: "tark_plugin_sdk::provider",
    });
    pub use exports::tark::plugin::provider_plugin::*;
    pub use exports::tark::plugin::provider_stream::*;
}
#[cfg(all(feature = "streaming-provider", not(feature = "published")))]
pub(crate) use provider as world;
#[cfg(all(feature = "streaming-provider", not(feature = "published")))]
pub use provider::export_provider;

#[cfg(all(feature = "hook", not(feature = "published")))]
#[allow(missing_docs, clippy::all)]
pub mod hook {
    wit_bindgen::generate!({
        world: "hook-world",
        path: "wit/tark.wit",
        pub_export_macro: true,
        export_macro_name: "export_hook",
        default_bindings_module: "tark_plugin_sdk::hook",
    });
    pub use exports::tark::plugin::hook_plugin::*;
}
#[cfg(all(feature = "hook", not(feature = "published")))]
pub(crate) use hook as world;
#[cfg(all(feature = "hook", not(feature = "published")))]
pub use hook::export_hook;

#[cfg(all(feature = "channel", not(feature = "published")))]
#[allow(missing_docs, clippy::all)]
pub mod channel {
    wit_bindgen::generate!({
        world: "channel-world",
        path: "wit/tark.wit",
        pub_export_macro: true,
        export_macro_name: "export_channel",
        default_bindings_module: "tark_plugin_sdk::channel",
    });
    pub use exports::tark::plugin::channel_plugin::*;
}
#[cfg(all(feature = "channel", not(feature = "published")))]
pub(crate) use channel as world;
#[cfg(all(feature = "channel", not(feature = "published")))]
pub use channel::export_channel;

#[cfg(all(feature = "auth", feature = "published"))]
#[allow(missing_docs, clippy::all)]
pub mod auth {
    wit_bindgen::generate!({
        world: "auth-world",
        path: "wit/published/tark.wit",
        pub_export_macro: true,
        export_macro_name: "export_auth",
        default_bindings_module: "tark_plugin_sdk::auth",
    });
    pub use exports::tark::plugin::auth_plugin::*;
}
#[cfg(all(feature = "auth", feature = "published"))]
pub(crate) use auth as world;
#[cfg(all(feature = "auth", feature = "published"))]
pub use auth::export_auth;

#[cfg(all(feature = "tool", feature = "published"))]
#[allow(missing_docs, clippy::all)]
pub mod tool {
    wit_bindgen::generate!({
        world: "tool-world",
        path: "wit/published/tark.wit",
        pub_export_macro: true,
        export_macro_name: "export_tool",
        default_bindings_module: "tark_plugin_sdk::tool",
    });
    pub use exports::tark::plugin::tool_plugin::*;
}
#[cfg(all(feature = "tool", feature = "published"))]
pub(crate) use tool as world;
#[cfg(all(feature = "tool", feature = "published"))]
pub use tool::export_tool;

#[cfg(all(feature = "provider", feature = "published"))]
#[allow(missing_docs, clippy::all)]
pub mod provider {
    wit_bindgen::generate!({
        world: "provider-world",
        path: "wit/published/tark.wit",
        pub_export_macro: true,
        export_macro_name: "export_provider",
        default_bindings_module: "tark_plugin_sdk::provider",
    });
    pub use exports::tark::plugin::provider_plugin::*;
}
#[cfg(all(feature = "provider", feature = "published"))]
pub(crate) use provider as world;
#[cfg(all(feature = "provider", feature = "published"))]
pub use provider::export_provider;

#[cfg(all(feature = "channel", feature = "published"))]
#[allow(missing_docs, clippy::all)]
pub mod channel {
    wit_bindgen::generate!({
        world: "channel-world",
        path: "wit/published/tark.wit",
        pub_export_macro: true,
        export_macro_name: "export_channel",
        default_bindings_module: "tark_plugin_sdk::channel",
    });
    pub use exports::tark::plugin::channel_plugin::*;
}
#[cfg(all(feature = "channel", feature = "published"))]
pub(crate) use channel as world;
#[cfg(all(feature = "channel", feature = "published"))]
pub use channel::export_channel;
