//! Prometheus metrics: what an operator scrapes per node.
//!
//! One process-wide set ([`METRICS`]), counted where things happen (the API
//! edge, the worker manager, the broker, the audit log) and rendered in the
//! Prometheus text format by [`render`], on `[metrics] listen` (loopback TCP or
//! a Unix socket; off by default) and through `tarkctl metrics`. Labels are
//! bounded: RPC paths and status codes are fixed sets, plugins are the
//! installed ones; tenants are never a label.

use std::sync::LazyLock;
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

pub mod listener;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RpcCode {
    pub rpc: String,
    pub code: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct Rpc {
    pub rpc: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PluginLabel {
    pub plugin: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PluginCode {
    pub plugin: String,
    pub code: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct Capability {
    pub capability: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct Why {
    pub reason: String,
}

type Histograms<L> = Family<L, Histogram, fn() -> Histogram>;

/// 0.25 ms to ~16 s, doubling.
fn latency() -> Histogram {
    Histogram::new(exponential_buckets(0.000_25, 2.0, 17))
}

/// Every metric tarkd keeps.
pub struct Metrics {
    pub api_calls: Family<RpcCode, Counter>,
    pub api_latency: Histograms<Rpc>,
    pub plugin_calls: Family<PluginCode, Counter>,
    pub plugin_latency: Histograms<PluginLabel>,
    pub denials: Family<Capability, Counter>,
    pub broker_calls: Family<Capability, Counter>,
    pub worker_starts: Family<PluginLabel, Counter>,
    pub worker_crashes: Family<PluginLabel, Counter>,
    pub quarantines: Family<PluginLabel, Counter>,
    pub live_workers: Gauge,
    pub standby_workers: Gauge,
    pub storage_bytes: Gauge,
    /// Agent API connections open now, and those refused before a byte was
    /// read (no principal, over a limit).
    pub api_connections: Gauge,
    pub api_connections_refused: Family<Why, Counter>,
    registry: Registry,
}

impl Metrics {
    fn new() -> Self {
        let mut m = Self {
            api_calls: Family::default(),
            api_latency: Family::new_with_constructor(latency),
            plugin_calls: Family::default(),
            plugin_latency: Family::new_with_constructor(latency),
            denials: Family::default(),
            broker_calls: Family::default(),
            worker_starts: Family::default(),
            worker_crashes: Family::default(),
            quarantines: Family::default(),
            live_workers: Gauge::default(),
            standby_workers: Gauge::default(),
            storage_bytes: Gauge::default(),
            api_connections: Gauge::default(),
            api_connections_refused: Family::default(),
            registry: Registry::with_prefix("tarkd"),
        };
        let r = &mut m.registry;
        r.register(
            "api_calls",
            "Agent API calls by RPC and status code",
            m.api_calls.clone(),
        );
        r.register(
            "api_call_duration_seconds",
            "Agent API call latency by RPC (until the response headers)",
            m.api_latency.clone(),
        );
        r.register(
            "plugin_calls",
            "Calls to plugins by plugin and status code",
            m.plugin_calls.clone(),
        );
        r.register(
            "plugin_call_duration_seconds",
            "Plugin call latency by plugin",
            m.plugin_latency.clone(),
        );
        r.register(
            "denials",
            "Host calls refused, by capability",
            m.denials.clone(),
        );
        r.register(
            "broker_calls",
            "Host calls brokered, by capability",
            m.broker_calls.clone(),
        );
        r.register(
            "worker_starts",
            "Workers started, by plugin",
            m.worker_starts.clone(),
        );
        r.register(
            "worker_crashes",
            "Workers that exited during a call, by plugin",
            m.worker_crashes.clone(),
        );
        r.register(
            "quarantines",
            "Calls refused because the plugin is quarantined",
            m.quarantines.clone(),
        );
        r.register(
            "live_workers",
            "Worker processes alive now, bound to a tenant and plugin",
            m.live_workers.clone(),
        );
        r.register(
            "standby_workers",
            "Standby worker processes alive now, not yet bound",
            m.standby_workers.clone(),
        );
        r.register(
            "storage_bytes",
            "Bytes of keys and values in plugin storage",
            m.storage_bytes.clone(),
        );
        r.register(
            "api_connections",
            "Agent API connections open now (Unix socket)",
            m.api_connections.clone(),
        );
        r.register(
            "api_connections_refused",
            "Agent API connections refused before a byte was read, by reason",
            m.api_connections_refused.clone(),
        );
        m
    }

    /// One agent API call, with the code it ended with.
    pub fn api_call(&self, rpc: &str, code: tonic::Code, took: Duration) {
        let rpc = rpc.to_owned();
        self.api_calls
            .get_or_create(&RpcCode {
                rpc: rpc.clone(),
                code: format!("{code:?}"),
            })
            .inc();
        self.api_latency
            .get_or_create(&Rpc { rpc })
            .observe(took.as_secs_f64());
    }

    /// One call to a plugin's worker.
    pub fn plugin_call(&self, plugin: &str, code: tonic::Code, took: Duration) {
        self.plugin_calls
            .get_or_create(&PluginCode {
                plugin: plugin.to_owned(),
                code: format!("{code:?}"),
            })
            .inc();
        self.plugin_latency
            .get_or_create(&PluginLabel {
                plugin: plugin.to_owned(),
            })
            .observe(took.as_secs_f64());
    }

    /// Counts one event of a per-plugin counter.
    pub fn plugin_event(family: &Family<PluginLabel, Counter>, plugin: &str) {
        family
            .get_or_create(&PluginLabel {
                plugin: plugin.to_owned(),
            })
            .inc();
    }

    /// Forgets a removed plugin's series, so a scrape shows only what is
    /// installed.
    pub fn forget_plugin(&self, plugin: &str) {
        let label = PluginLabel {
            plugin: plugin.to_owned(),
        };
        for family in [&self.worker_starts, &self.worker_crashes, &self.quarantines] {
            family.remove(&label);
        }
        self.plugin_latency.remove(&label);
        for code in 0..=16 {
            self.plugin_calls.remove(&PluginCode {
                plugin: plugin.to_owned(),
                code: format!("{:?}", tonic::Code::from_i32(code)),
            });
        }
    }

    /// Counts one event of a per-capability counter.
    pub fn capability_event(family: &Family<Capability, Counter>, capability: &str) {
        family
            .get_or_create(&Capability {
                capability: capability.to_owned(),
            })
            .inc();
    }
}

/// The process's metrics.
pub static METRICS: LazyLock<Metrics> = LazyLock::new(Metrics::new);

/// The metrics in the Prometheus text exposition format.
pub fn render() -> String {
    let mut out = String::new();
    if prometheus_client::encoding::text::encode(&mut out, &METRICS.registry).is_err() {
        out.clear();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counted_events_render_with_their_labels() {
        let m = Metrics::new();
        m.api_call(
            "/tark.plugin.v1.Tools/InvokeTool",
            tonic::Code::Ok,
            Duration::from_millis(3),
        );
        m.api_call(
            "/tark.plugin.v1.Tools/InvokeTool",
            tonic::Code::NotFound,
            Duration::from_millis(1),
        );
        Metrics::capability_event(&m.denials, "http");
        m.live_workers.set(4);
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &m.registry).unwrap_or_default();
        for line in [
            "tarkd_api_calls_total{rpc=\"/tark.plugin.v1.Tools/InvokeTool\",code=\"Ok\"} 1",
            "tarkd_api_calls_total{rpc=\"/tark.plugin.v1.Tools/InvokeTool\",code=\"NotFound\"} 1",
            "tarkd_api_call_duration_seconds_count{rpc=\"/tark.plugin.v1.Tools/InvokeTool\"} 2",
            "tarkd_denials_total{capability=\"http\"} 1",
            "tarkd_live_workers 4",
        ] {
            assert!(out.lines().any(|l| l == line), "no {line:?} in\n{out}");
        }
    }
}
