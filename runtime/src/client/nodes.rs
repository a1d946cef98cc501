//! Several registry nodes behind one connection file: its
//! `ApiBaseAddresses` (and `SecurityTokenServiceBaseAddresses`) may list
//! more than one. Calls go to the current node, the first at start; when a
//! node does not answer (no connection, or no answer in time), the next
//! becomes current and the caller's retry goes there. Which calls may be
//! retried at all is the retry policy's business, exactly as with one node
//! (PROTOCOL.md: the lock's `requestId`, the idempotent repeats).

use std::sync::atomic::{AtomicUsize, Ordering};

use super::RegistryError;

/// The nodes of one registry, in the connection file's order.
#[derive(Debug)]
pub struct Nodes {
    urls: Vec<String>,
    current: AtomicUsize,
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
            current: AtomicUsize::new(0),
        }
    }

    /// Every node.
    pub fn urls(&self) -> &[String] {
        &self.urls
    }

    /// The current node: its index (for [`Nodes::failed`]) and base URL.
    pub fn current(&self) -> (usize, &str) {
        let index = self.current.load(Ordering::Relaxed) % self.urls.len();
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
        let moved = self
            .current
            .compare_exchange(index, next, Ordering::Relaxed, Ordering::Relaxed)
            .is_ok();
        if moved {
            tracing::warn!(
                "registry node {} does not answer ({error}); moving to {}",
                self.urls[index],
                self.urls[next]
            );
        }
        moved
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
}
