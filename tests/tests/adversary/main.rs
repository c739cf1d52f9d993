//! The standing red-team suite: every attack on tarkd that once worked, as a
//! regression test through real processes, with budgets (time, CPU, memory)
//! an order of magnitude from the failure each guards against, so they hold
//! on a loaded CI machine and fail the day a change reopens the hole.
//!
//! - [`describe`]: a hung tool list holding up everyone, a newcomer taking
//!   tool names;
//! - [`edge`]: before authentication: the HPACK bomb, slow headers, idle
//!   connections, streams;
//! - [`small`]: unsigned over signed, non-UTF-8 webhooks, tools a tenant
//!   cannot call, open metrics;
//! - [`stall`]: a stalled tarkd blaming and killing a worker that answered;
//! - [`jail`]: command tools reaching the host's Unix sockets;
//! - [`ids`]: configuration that would run workers as root or share uids;
//! - [`identity`]: a client certificate naming one principal by SAN and
//!   another by CN;
//! - [`fairness`]: 200 tenants spinning one plugin starving another;
//! - [`grants`]: env patterns, `/proc`, long paths and names;
//! - [`logs`]: log injection and audit flooding;
//!
//! Each module's doc names the attacks it replays.

mod describe;
mod edge;
mod fairness;
mod grants;
mod identity;
mod ids;
mod jail;
mod logs;
mod small;
mod stall;
