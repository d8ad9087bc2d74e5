//! The leader's heartbeat, on its own task so that a stalled follower never holds up
//! the writer: every period (and at once after a promotion) it sends every follower,
//! lagging or not, an empty batch naming the leader's newest order and commit index.
//! A follower that lacks something syncs from the leader before it answers, so one
//! that answers is synced back (no longer lagging); one that does not is lagging; one
//! that knows a newer epoch deposes this leader. After a round, the newest order is
//! durable here and on every follower that is not lagging: it is committed.

use std::sync::Arc;

use super::leader::{end_of, send_all, Sent};
use super::state::Replica;

/// Beats every heartbeat period, or at once when asked; runs until shutdown drops it.
pub async fn heartbeat_loop(replica: Replica) {
    loop {
        tokio::select! {
            _ = tokio::time::sleep(replica.timeouts().heartbeat) => {}
            _ = replica.beat_requested() => {}
        }
        beat(&replica).await;
    }
}

async fn beat(replica: &Replica) {
    let leadership = replica.leadership();
    if !leadership.accepts_writes() {
        return;
    }
    // Everything the heartbeat names must be durable here first.
    if let Err(e) = replica.store().flush().await {
        let log = replica.lock_log().await;
        replica.storage_failed(&log, &e);
        return;
    }
    let Ok(prev) = replica.store().last_pos() else {
        return;
    };
    let request = Arc::new(replica.empty_batch(leadership.epoch, prev));
    let mut deposed = false;
    let mut failed = false;
    let mut heard = Vec::new();
    for (peer, sent) in send_all(replica, replica.peers().to_vec(), request.clone()).await {
        match sent {
            Sent::Stored(last) => {
                replica.set_lagging(peer, false);
                heard.push((peer, last));
            }
            Sent::Lagging(_) => {
                replica.set_lagging(peer, true);
            }
            Sent::Refused(_) => deposed = true,
            Sent::Failed(_) => failed = true,
        }
    }
    replica.record_lag(end_of(&request), &heard);
    let log = replica.lock_log().await;
    if replica.leadership() != leadership {
        return; // the leadership changed meanwhile: this round proves nothing
    }
    if deposed {
        replica.step_down(&log);
    } else if !failed {
        replica.advance_commit(end_of(&request));
    }
}
