//! A stream's polls run in the order tarkd numbered them.
//!
//! A provider streams by answering one `chat-stream-poll` per chunk. tarkd
//! keeps a few polls of a stream in flight so the worker goes from one to the
//! next without a round trip through tarkd for each; but every request is its
//! own HTTP/2 stream served by its own task, so nothing says they reach the
//! plugin in the order they were sent, and a chunk taken out of turn would
//! scramble the agent's text. Each poll carries its place (`seq`, from 1) and
//! the number of the pump that sent it (`pump`, which tarkd never reuses), and
//! waits here for its turn.
//!
//! Once a stream has ended (its last chunk, a failure, a cancel, a poll cut
//! off part-way) the plugin no longer knows it, and may already have given its
//! id to a new stream: the polls still in flight behind the end are answered
//! "done" here and never reach the plugin.

use std::collections::{HashMap, VecDeque};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use tokio::sync::Notify;

/// Ended pumps remembered for the polls still in flight behind their end.
/// Those are already in the worker's channel when the end is answered (tarkd
/// sends at most a window of calls), so a few hundred is far more than enough.
const ENDED: usize = 256;

/// What a numbered poll should do once it is its turn.
#[derive(Debug, PartialEq, Eq)]
pub enum Turn {
    /// Call the plugin, then report with [`Order::ran`].
    Run,
    /// The stream ended before this poll's turn: answer "done" without the
    /// plugin.
    Ended,
    /// The poll ahead did not finish within the wait: the stream is stuck.
    Stuck,
}

/// Whether a poll's answer leaves its stream open.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum After {
    /// A chunk that is not the last: the next poll has its turn.
    More,
    /// The last chunk, a failure, or anything that is not a chunk.
    End,
}

#[derive(Default)]
struct Table {
    /// Open pumps and the seq whose turn it is.
    next: HashMap<u64, u64>,
    /// Recently ended pumps, oldest first.
    ended: VecDeque<u64>,
}

/// The order of every stream's polls in this worker.
#[derive(Default)]
pub struct Order {
    table: Mutex<Table>,
    turned: Notify,
}

impl Order {
    fn table(&self) -> MutexGuard<'_, Table> {
        // The table is left consistent at every step: a panic elsewhere
        // cannot have broken it.
        self.table.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Waits until poll `seq` of `pump` may run. `patience`: how long to wait
    /// without the stream moving on before calling it stuck (the plugin's
    /// deadline and then some: the poll ahead is bounded by it).
    pub async fn turn(&self, pump: u64, seq: u64, patience: Duration) -> Turn {
        let (mut last, mut since) = (None, Instant::now());
        loop {
            let turned = self.turned.notified();
            tokio::pin!(turned);
            // Registered before the check, so no advance is missed between.
            turned.as_mut().enable();
            {
                let mut t = self.table();
                if t.ended.contains(&pump) {
                    return Turn::Ended;
                }
                let next = *t.next.entry(pump).or_insert(1);
                if next == seq {
                    return Turn::Run;
                }
                if next > seq {
                    // Its place was taken: a duplicate seq from a broken pump.
                    return Turn::Stuck;
                }
                if last != Some(next) {
                    (last, since) = (Some(next), Instant::now());
                }
            }
            let Some(left) = patience.checked_sub(since.elapsed()) else {
                return Turn::Stuck;
            };
            // Woken by any stream's progress, or not at all: checked again.
            let _ = tokio::time::timeout(left, turned).await;
        }
    }

    /// Poll `seq` of `pump` ran and answered.
    pub fn ran(&self, pump: u64, seq: u64, after: After) {
        let mut t = self.table();
        match after {
            After::More => {
                if let Some(next) = t.next.get_mut(&pump)
                    && *next == seq
                {
                    *next = seq + 1;
                }
            }
            After::End => end(&mut t, pump),
        }
        drop(t);
        self.turned.notify_waiters();
    }

    /// The pump's stream ended without an answer to read (cancelled, or a
    /// poll cut off part-way).
    pub fn end(&self, pump: u64) {
        end(&mut self.table(), pump);
        self.turned.notify_waiters();
    }

    /// Open pumps, for tests.
    #[cfg(test)]
    fn open(&self) -> usize {
        self.table().next.len()
    }
}

fn end(t: &mut Table, pump: u64) {
    t.next.remove(&pump);
    if !t.ended.contains(&pump) {
        if t.ended.len() == ENDED {
            t.ended.pop_front();
        }
        t.ended.push_back(pump);
    }
}

/// Ends its pump's stream if dropped before [`Self::ran`]: a poll whose call
/// was cut off part-way leaves the plugin's instance replaced, and with it the
/// stream, so the polls behind must not wait for a turn that never comes.
pub struct Running<'a> {
    order: &'a Order,
    pump: u64,
    seq: u64,
    done: bool,
}

impl<'a> Running<'a> {
    pub fn new(order: &'a Order, pump: u64, seq: u64) -> Self {
        Self {
            order,
            pump,
            seq,
            done: false,
        }
    }

    pub fn ran(mut self, after: After) {
        self.done = true;
        self.order.ran(self.pump, self.seq, after);
    }
}

impl Drop for Running<'_> {
    fn drop(&mut self) {
        if !self.done {
            self.order.end(self.pump);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;

    const PATIENCE: Duration = Duration::from_secs(5);

    /// Polls sent in any order run in their numbered order.
    #[tokio::test]
    async fn polls_run_in_their_order_whatever_order_they_arrive_in() {
        for arrival in [[1, 2, 3, 4], [4, 3, 2, 1], [2, 4, 1, 3], [3, 1, 4, 2]] {
            let order = Arc::new(Order::default());
            let ran = Arc::new(Mutex::new(Vec::new()));
            let mut tasks = Vec::new();
            for seq in arrival {
                let (order, ran) = (order.clone(), ran.clone());
                tasks.push(tokio::spawn(async move {
                    assert_eq!(order.turn(7, seq, PATIENCE).await, Turn::Run);
                    ran.lock().unwrap_or_else(PoisonError::into_inner).push(seq);
                    order.ran(7, seq, After::More);
                }));
                tokio::task::yield_now().await;
            }
            for t in tasks {
                t.await.ok();
            }
            let ran = ran.lock().unwrap_or_else(PoisonError::into_inner).clone();
            assert_eq!(ran, [1, 2, 3, 4], "arrived as {arrival:?}");
        }
    }

    /// What each way a poll can end means for the polls behind it.
    #[tokio::test]
    async fn an_end_answers_the_polls_behind_without_the_plugin() {
        let order = Order::default();
        assert_eq!(order.turn(1, 1, PATIENCE).await, Turn::Run);
        order.ran(1, 1, After::End);
        assert_eq!(order.turn(1, 2, PATIENCE).await, Turn::Ended);
        assert_eq!(order.turn(1, 3, PATIENCE).await, Turn::Ended);

        // A cancel, and a poll cut off part-way, end the stream too.
        order.end(2);
        assert_eq!(order.turn(2, 1, PATIENCE).await, Turn::Ended);
        assert_eq!(order.turn(3, 1, PATIENCE).await, Turn::Run);
        drop(Running::new(&order, 3, 1));
        assert_eq!(order.turn(3, 2, PATIENCE).await, Turn::Ended);
        assert_eq!(order.open(), 0, "ended pumps hold no entry");

        // Another pump is not touched by their ends.
        assert_eq!(order.turn(4, 1, PATIENCE).await, Turn::Run);
        Running::new(&order, 4, 1).ran(After::More);
        assert_eq!(order.turn(4, 2, PATIENCE).await, Turn::Run);
    }

    /// A poll whose turn never comes is given up on once nothing moves for
    /// its patience, and a replayed seq is refused.
    #[tokio::test]
    async fn a_stuck_or_replayed_poll_does_not_wait_for_ever() {
        let order = Order::default();
        let patience = Duration::from_millis(50);
        let t0 = std::time::Instant::now();
        assert_eq!(order.turn(5, 2, patience).await, Turn::Stuck);
        assert!(t0.elapsed() < Duration::from_secs(5));
        assert_eq!(order.turn(5, 1, PATIENCE).await, Turn::Run);
        order.ran(5, 1, After::More);
        assert_eq!(order.turn(5, 1, PATIENCE).await, Turn::Stuck);
    }

    /// Ended pumps are remembered up to a bound, oldest forgotten first.
    #[test]
    fn the_memory_of_ended_pumps_is_bounded() {
        let order = Order::default();
        for pump in 0..(ENDED as u64 * 4) {
            order.end(pump);
        }
        let t = order.table();
        assert_eq!(t.ended.len(), ENDED);
        assert_eq!(t.ended.front(), Some(&(ENDED as u64 * 3)));
    }
}
