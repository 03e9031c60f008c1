//! The coordinator's side of load leases (see [`lease`](super::lease)):
//! asking a key's primary owner for its lease, and ending it.

use std::time::Duration;

use bytes::Bytes;

use super::lease::LeaseAnswer;

impl super::coordinator::Coordinator {
    /// Asks `key`'s primary owner for its load lease (or, `release`, ends
    /// it). A primary that cannot be asked answers nothing: the caller
    /// loads without a lease ([`LeaseAnswer::Granted`]).
    pub(crate) async fn lease(&self, key: &[u8], ttl: Duration, release: bool) -> LeaseAnswer {
        use super::placement::Target;
        use super::wire::{DataRequest, DataResponse};
        let p = self.placement.load_full();
        let hash = crate::keyspace::key_hash(key);
        let Some(primary) = p.ring.primary(hash).copied() else {
            return LeaseAnswer::Granted;
        };
        match p.target(&self.me, &primary) {
            Some(Target::Local) if release => {
                self.replica.leases.release(key, self.me);
                LeaseAnswer::Granted
            }
            Some(Target::Local) => self.replica.leases.acquire(key, self.me, ttl),
            Some(Target::Remote(addr)) => {
                let body = Bytes::from(DataRequest::encode_lease(key, &self.me, ttl, release));
                let answer = tokio::time::timeout(self.config.timeout, self.request(addr, body)).await;
                match answer {
                    Ok(Ok(DataResponse::Lease(answer))) => answer,
                    _ => LeaseAnswer::Granted,
                }
            }
            None => LeaseAnswer::Granted,
        }
    }
}
