//! `FLUSHALL`: a versioned flush of the whole cluster.
//!
//! A flush is a floor version: every member removes what it holds below it
//! and refuses every write below it from then on (late writes, hints,
//! repairs, fills: [`Store::flush`](crate::store::Store::flush)), so
//! nothing written before the flush comes back. The floor is taken above
//! every version any member has stamped (a first round asks each member
//! for its clock), so every write acknowledged before the flush began is
//! below it; writes stamped after it by a clock still behind are refused
//! as superseded and re-stamped past it. Members that join or restart
//! learn the floor from the batches they fill from, before they serve.
//!
//! The flush is acknowledged only when every member applied it; otherwise
//! [`Error::FlushIncomplete`] names those that did not (the others did).
//! A member that missed it (down, or cut off) learns the floor from
//! anti-entropy once it is back; until then it may serve what it held.

use bytes::Bytes;

use super::coordinator::Coordinator;
use super::placement::Target;
use super::wire::{DataRequest, DataResponse};
use super::Error;
use crate::hlc::Version;
use crate::id::NodeId;
use crate::membership::RingState;

impl Coordinator {
    /// Flushes every member; the floor.
    pub(crate) async fn flush(&self) -> Result<Version, Error> {
        let p = self.placement.load_full();
        let members: Vec<NodeId> = p
            .members
            .values()
            .filter(|m| !matches!(m.ring, RingState::Left | RingState::Removed))
            .map(|m| m.identity.id)
            .collect();
        let mut missing = Vec::new();
        // Round one: a floor above every member's clock.
        let clocks = self.ask_all(&members, &Bytes::from(DataRequest::encode_flush(None))).await;
        let mut floor = self.replica.hlc.new_version();
        for (id, answer) in members.iter().zip(clocks) {
            match answer {
                Some(DataResponse::Clock(now)) => floor = floor.max(now),
                _ => missing.push(*id),
            }
        }
        // Round two: every member flushes at it (this node too).
        let _ = self.replica.hlc.update(floor.ts);
        self.replica.store.flush(floor);
        let body = Bytes::from(DataRequest::encode_flush(Some(floor)));
        let applied = self.ask_all(&members, &body).await;
        for (id, answer) in members.iter().zip(applied) {
            if !matches!(answer, Some(DataResponse::Applied { .. })) && !missing.contains(id) {
                missing.push(*id);
            }
        }
        tracing::info!(%floor, members = members.len(), missing = missing.len(), "flush");
        if missing.is_empty() {
            Ok(floor)
        } else {
            missing.sort();
            Err(Error::FlushIncomplete { missing })
        }
    }

    /// Sends `body` to every member of `members` at once (this node
    /// answers itself), each bounded by the operation timeout; their
    /// answers in order, `None` where none came.
    async fn ask_all(&self, members: &[NodeId], body: &Bytes) -> Vec<Option<DataResponse>> {
        let p = self.placement.load_full();
        let asks = members.iter().map(|id| {
            let target = p.target(&self.me, id).map(|t| match t {
                Target::Local => None,
                Target::Remote(addr) => Some(addr.to_owned()),
            });
            async move {
                match target {
                    None => None,
                    Some(None) => Some(self.replica.handle(body)),
                    Some(Some(addr)) => {
                        let answer = self.request(&addr, body.clone());
                        match tokio::time::timeout(self.config.timeout, answer).await {
                            Ok(Ok(response)) => Some(response),
                            _ => None,
                        }
                    }
                }
            }
        });
        futures_util::future::join_all(asks).await
    }
}
