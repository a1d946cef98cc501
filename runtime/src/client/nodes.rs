//! Several registry nodes behind one connection file: its
//! `ApiBaseAddresses` (and `SecurityTokenServiceBaseAddresses`) may list
//! more than one. Calls go to the current node, the first at start; when a
//! node does not answer (no connection, or no answer in time), the next
//! becomes current and the caller's retry goes there. Which calls may be
//! retried at all is the retry policy's business, exactly as with one node
//! (PROTOCOL.md: the lock's `requestId`, the idempotent repeats).
//!
//! A call that may wait long for its answer (a block, a commit) does not sit
//! out its whole wait on a node that another call has meanwhile found
//! silent: [`Nodes::left`] ends as soon as the node it names is left, and
//! the call is retried on the next one.

use tokio::sync::watch;

use super::http::Wait;

use super::RegistryError;

/// The nodes of one registry, in the connection file's order.
#[derive(Debug)]
pub struct Nodes {
    urls: Vec<String>,
    /// The current node's index; its receivers are [`Nodes::left`]'s.
    current: watch::Sender<usize>,
}

impl Nodes {
    /// The nodes at `urls` (at least one; trailing slashes dropped).
    pub fn new(urls: &[String]) -> Nodes {
        let urls: Vec<String> = urls
            .iter()
            .map(|url| url.trim_end_matches('/').to_string())
            .collect();
        assert!(!urls.is_empty(), "a registry has at least one node");
        Nodes {
            urls,
            current: watch::Sender::new(0),
        }
    }

    /// Every node.
    pub fn urls(&self) -> &[String] {
        &self.urls
    }

    /// The current node: its index (for [`Nodes::failed`]) and base URL.
    pub fn current(&self) -> (usize, &str) {
        let index = *self.current.borrow();
        (index, &self.urls[index])
    }

    /// After a call to node `index` ended in `error`: when it says the node
    /// did not answer, the next node becomes current (unless another call
    /// already moved on). Returns whether it moved.
    pub fn failed(&self, index: usize, error: &RegistryError) -> bool {
        if self.urls.len() < 2 || !did_not_answer(error) {
            return false;
        }
        let next = (index + 1) % self.urls.len();
        let moved = self.current.send_if_modified(|current| {
            let moves = *current == index;
            if moves {
                *current = next;
            }
            moves
        });
        if moved {
            tracing::warn!(
                "registry node {} does not answer ({error}); moving to {}",
                self.urls[index],
                self.urls[next]
            );
        }
        moved
    }

    /// How long a call waits for its answer: [`Wait::Brief`] (the sooner to
    /// move on from a node that does not answer) only where there is another
    /// node to move to; with one node every call waits as long as a bulk one,
    /// since a slow registry is still the only one (PROTOCOL.md bounds no
    /// answer's time, and every retry adds to its load).
    pub fn wait(&self, wait: Wait) -> Wait {
        if self.urls.len() > 1 {
            wait
        } else {
            Wait::Bulk
        }
    }

    /// Ends once node `index` is no longer current (never, while it is).
    /// Take it before the call starts, so that a move during the call is
    /// not missed.
    pub fn left(&self, index: usize) -> impl Future<Output = ()> + use<> {
        let mut current = self.current.subscribe();
        async move {
            if current.wait_for(|current| *current != index).await.is_err() {
                // The nodes are gone, and with them the client: no move comes.
                std::future::pending::<()>().await;
            }
        }
    }
}

/// Whether `error` means the node itself is not there (as opposed to an
/// answer, even a 5xx, from a node that is).
fn did_not_answer(error: &RegistryError) -> bool {
    match error {
        RegistryError::Unreachable(_) => true,
        RegistryError::Transient { message, .. } => message.contains(super::http::NO_ANSWER),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_silent_node_hands_over_to_the_next_and_answers_do_not() {
        let nodes = Nodes::new(&["http://a/".into(), "http://b".into()]);
        assert_eq!(nodes.current(), (0, "http://a"));
        let refused = RegistryError::Unreachable("connection refused".into());
        let answered = RegistryError::transient("POST /x answered 503");
        assert!(!nodes.failed(0, &answered));
        assert!(nodes.failed(0, &refused));
        assert_eq!(nodes.current(), (1, "http://b"));
        // A second call that saw node 0 fail does not skip node 1.
        assert!(!nodes.failed(0, &refused));
        assert_eq!(nodes.current().0, 1);
        let timeout =
            RegistryError::transient(format!("GET /y: {} 60s", super::super::http::NO_ANSWER));
        assert!(nodes.failed(1, &timeout));
        assert_eq!(nodes.current(), (0, "http://a"));
    }

    #[test]
    fn a_brief_wait_is_brief_only_with_a_node_to_move_to() {
        let one = Nodes::new(&["http://a".into()]);
        assert_eq!(one.wait(Wait::Brief), Wait::Bulk);
        let two = Nodes::new(&["http://a".into(), "http://b".into()]);
        assert_eq!(two.wait(Wait::Brief), Wait::Brief);
        assert_eq!(two.wait(Wait::Bulk), Wait::Bulk);
    }

    #[tokio::test]
    async fn a_long_call_learns_that_its_node_was_left() {
        let nodes = Nodes::new(&["http://a".into(), "http://b".into()]);
        let left = nodes.left(0);
        let still = nodes.left(1);
        let refused = RegistryError::Unreachable("connection refused".into());
        assert!(nodes.failed(0, &refused));
        tokio::time::timeout(std::time::Duration::from_secs(5), left)
            .await
            .expect("the call on node 0 hears that it was left");
        let waited = tokio::time::timeout(std::time::Duration::from_millis(50), still).await;
        assert!(
            waited.is_err(),
            "the call on node 1, the current one, goes on"
        );
    }
}
