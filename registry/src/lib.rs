//! The on-premise registry: the server side of the Agent protocol (arrives with its own issue).
