//! What every sender (SMTP or files for email, HTTP for webhooks) offers a worker.

use std::future::Future;

use futures::StreamExt;
use futures::stream::FuturesUnordered;

use crate::DispatchError;

/// Proof that a sender accepted a message: the SMTP server's reply, the .eml file written, or
/// the webhook receiver's HTTP status.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SendReceipt {
    /// What the peer answered, for the delivery's history (e.g. `250 2.0.0 Ok: queued as 4F2`,
    /// `HTTP 204 No Content`, `written to data/outbox/….eml`).
    pub detail: String,
}

/// The outcome of one message.
pub type SendResult = Result<SendReceipt, DispatchError>;

/// A way to deliver one kind of message (email, webhook) to its peer. The channel a message
/// goes out on is [`clarion_model`]'s `Channel`; this is the machinery behind one.
///
/// Implementations keep their connections pooled and are shared by all tasks of a worker, so
/// `send` takes `&self` and may run many times at once.
pub trait Sender: Send + Sync {
    /// The message this sender delivers, already rendered.
    type Message: Send + Sync;

    /// Delivers one message. A failure says whether a retry may help.
    fn send(&self, message: &Self::Message) -> impl Future<Output = SendResult> + Send;

    /// Delivers a batch with at most `concurrency` messages in flight, returning one outcome per
    /// message in the order given. One message failing does not stop the others.
    ///
    /// `concurrency` below 1 is treated as 1. Senders with a connection pool never open more
    /// connections than the pool allows, whatever `concurrency` is; extra messages wait.
    fn send_many<'a>(
        &'a self,
        messages: &'a [Self::Message],
        concurrency: usize,
    ) -> impl Future<Output = Vec<SendResult>> + Send + 'a
    where
        Self: Sized,
    {
        async move {
            let limit = concurrency.max(1);
            let mut waiting = messages.iter().enumerate();
            let mut in_flight = FuturesUnordered::new();
            let mut outcomes = Vec::with_capacity(messages.len());
            loop {
                while in_flight.len() < limit {
                    let Some((index, message)) = waiting.next() else {
                        break;
                    };
                    in_flight.push(send_indexed(self, index, message));
                }
                match in_flight.next().await {
                    Some(outcome) => outcomes.push(outcome),
                    None => break,
                }
            }
            // Completion order is arbitrary; callers match outcomes to messages by position.
            outcomes.sort_unstable_by_key(|(index, _)| *index);
            outcomes.into_iter().map(|(_, outcome)| outcome).collect()
        }
    }
}

// A named async fn rather than a closure: the compiler cannot prove a closure-made future
// `Send` for every lifetime of the borrowed message.
async fn send_indexed<T: Sender>(
    sender: &T,
    index: usize,
    message: &T::Message,
) -> (usize, SendResult) {
    (index, sender.send(message).await)
}
