//! The replica's request loop: the task that answers the data-lane
//! requests other nodes' coordinators and rebalancers send this node, from
//! its [`Replica`]. A remote request's path ends here and in the store; it
//! never comes back into the node.

use std::sync::Arc;

use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::replica::Replica;
use super::wire::{DataRequest, DataResponse, RefusalCode};
use crate::net::Inbound;

/// Bulk requests (fill and anti-entropy scans, digests) waiting for the
/// bulk task; one more is refused `Overloaded` (and asked again by the
/// puller, see `Rebalancer::ask`). Each puller has one request out to a
/// source at a time, so this holds one per member pulling at once.
const BULK_QUEUE: usize = 64;

/// Starts the replica task on the data lane's inbound requests, until
/// `cancel` fires or the transport closes the lane. The caller keeps the
/// handle to wait for the task (and its bulk task) when it stops.
pub(crate) fn spawn(
    data: mpsc::Receiver<Inbound>,
    replica: Arc<Replica>,
    cancel: CancellationToken,
) -> JoinHandle<()> {
    tokio::spawn(serve_data(data, replica, cancel))
}

/// The replica task: answers data-lane requests from the local store.
/// Scans and digests, which walk whole ranges of the store, go to a task of
/// their own, so that on a runtime of more than one worker a get or set
/// arriving meanwhile is not queued behind one (on a single worker the walk
/// still holds the thread).
async fn serve_data(
    mut data: mpsc::Receiver<Inbound>,
    replica: Arc<Replica>,
    cancel: CancellationToken,
) {
    let (bulk_tx, bulk_rx) = mpsc::channel(BULK_QUEUE);
    let bulk = tokio::spawn(serve_bulk(bulk_rx, replica.clone(), cancel.clone()));
    loop {
        tokio::select! {
            biased;
            _ = cancel.cancelled() => break,
            inbound = data.recv() => {
                let Some(inbound) = inbound else { break };
                if !DataRequest::is_bulk(&inbound.body) {
                    let response = replica.handle(&inbound.body);
                    answer(inbound, response);
                    continue;
                }
                let (inbound, code, reason) = match bulk_tx.try_send(inbound) {
                    Ok(()) => continue,
                    Err(mpsc::error::TrySendError::Full(inbound)) => {
                        (inbound, RefusalCode::Overloaded, "too many scans queued")
                    }
                    Err(mpsc::error::TrySendError::Closed(inbound)) => {
                        tracing::error!("the scan task has stopped; refusing scans");
                        (inbound, RefusalCode::ShuttingDown, "the scan task has stopped")
                    }
                };
                let reason = reason.to_owned();
                answer(inbound, DataResponse::Refused { code, reason });
            }
        }
    }
    drop(bulk_tx);
    let _ = bulk.await;
}

/// Answers the bulk requests [`serve_data`] hands over, one at a time.
async fn serve_bulk(
    mut bulk: mpsc::Receiver<Inbound>,
    replica: Arc<Replica>,
    cancel: CancellationToken,
) {
    loop {
        let inbound = tokio::select! {
            biased;
            _ = cancel.cancelled() => return,
            inbound = bulk.recv() => match inbound {
                Some(inbound) => inbound,
                None => return,
            },
        };
        let response = replica.handle(&inbound.body);
        answer(inbound, response);
    }
}

/// Sends `response` to the requester of `inbound`, if it awaits one.
fn answer(inbound: Inbound, response: DataResponse) {
    if let Some(reply) = inbound.reply {
        let _ = reply.respond(response.encode().into());
    }
}
