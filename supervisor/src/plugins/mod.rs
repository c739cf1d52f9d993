//! What is installed: plugin manifests, reading a folder to install, the registry read from the plugin
//! roots (which root wins and how contributed ids are settled: `sources` decides, `roots` applies), installing and updating plugins, their kept versions, enabling,
//! disabling and removing them, reloading the directory, trusted signing keys
//! and the verdict on a package's signature, the
//! operator's approvals, and the example plugins bundled into `tarkd --dev`.

pub mod approvals;
pub mod bundled;
pub mod folder;
pub mod history;
pub mod install;
pub mod lifecycle;
pub mod manifest;
pub mod registry;
pub mod reload;
pub mod roots;
pub mod seniority;
pub mod sources;
pub mod trust;
