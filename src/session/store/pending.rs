//! The future a journal write returns: the writer's acknowledgement of a record that
//! is already queued.

use super::StoreError;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use tokio::sync::oneshot;

/// Resolves once the writer has made a queued record as durable as the sync mode
/// promises. The record is queued before this exists, so journal order is call order,
/// and dropping it does not withdraw the record (only the news of how it went).
#[must_use = "await it to know the record is durable; `let _ =` to not wait"]
#[derive(Debug)]
pub struct PendingWrite(State);

#[derive(Debug)]
enum State {
    Queued(oneshot::Receiver<Result<(), StoreError>>),
    Refused(Option<StoreError>),
}

impl PendingWrite {
    pub(crate) fn new(
        queued: Result<oneshot::Receiver<Result<(), StoreError>>, StoreError>,
    ) -> Self {
        PendingWrite(match queued {
            Ok(rx) => State::Queued(rx),
            Err(e) => State::Refused(Some(e)),
        })
    }
}

impl Future for PendingWrite {
    type Output = Result<(), StoreError>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match &mut self.0 {
            State::Queued(rx) => Pin::new(rx)
                .poll(cx)
                .map(|answer| answer.unwrap_or(Err(StoreError::Closed))),
            State::Refused(e) => Poll::Ready(Err(e.take().unwrap_or(StoreError::Closed))),
        }
    }
}
