//! [`NodeError`]: how a node request fails. The kind tells the caller what went wrong; the
//! message (the `Display`) is what the master sees in the RPC reply, unchanged from the
//! days of string errors so that masters and nodes of different builds read the same text.

use crate::exec::ExecError;
use crate::qmp::QmpError;
use crate::storage::runner::StorageError;

/// Why a node request (or one of its steps) failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NodeError {
    /// The request itself is wrong: an invalid name or value, an unknown hypervisor, a
    /// parameter out of range.
    #[error("{0}")]
    BadRequest(String),
    /// What the request names is not here: an instance that is not running, a missing disk,
    /// OS definition or console log.
    #[error("{0}")]
    NotFound(String),
    /// The node's state does not allow it: the instance already runs, does not fit in
    /// memory, a file is in the way.
    #[error("{0}")]
    Conflict(String),
    /// This node (its hypervisor or storage) cannot do that.
    #[error("{0}")]
    Unsupported(String),
    /// An external program (QEMU, `qemu-img`, an OS script, ...) failed.
    #[error("{0}")]
    CommandFailed(String),
    /// Something did not finish in time.
    #[error("{0}")]
    Timeout(String),
    /// A file or system call failed.
    #[error("{0}")]
    Io(String),
    /// A block storage operation (LVM, DRBD, image files) failed.
    #[error(transparent)]
    Storage(#[from] StorageError),
    /// A command could not be run through the command runner.
    #[error(transparent)]
    Exec(#[from] ExecError),
    /// QEMU's monitor failed or refused a command.
    #[error(transparent)]
    Qmp(#[from] QmpError),
    /// A step failed: `context` says which (e.g. `disk disk/0`), `source` why.
    #[error("{context}: {source}")]
    Context {
        context: String,
        source: Box<NodeError>,
    },
    /// Not the request's fault: a worker task died, an answer could not be encoded.
    #[error("{0}")]
    Internal(String),
    /// The sender is fenced off: its master term is lower than the highest this node has
    /// seen, or the request is for another cluster (`fence`).
    #[error("{0}")]
    Fenced(String),
}

/// The kind of a [`NodeError`], with any context stripped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    BadRequest,
    NotFound,
    Conflict,
    Unsupported,
    CommandFailed,
    Timeout,
    Io,
    Storage,
    Qmp,
    Internal,
    Fenced,
}

/// Results of node operations.
pub type NodeResult<T> = Result<T, NodeError>;

impl NodeError {
    pub fn bad_request(msg: impl Into<String>) -> Self {
        NodeError::BadRequest(msg.into())
    }
    pub fn not_found(msg: impl Into<String>) -> Self {
        NodeError::NotFound(msg.into())
    }
    pub fn conflict(msg: impl Into<String>) -> Self {
        NodeError::Conflict(msg.into())
    }
    pub fn unsupported(msg: impl Into<String>) -> Self {
        NodeError::Unsupported(msg.into())
    }
    pub fn command_failed(msg: impl Into<String>) -> Self {
        NodeError::CommandFailed(msg.into())
    }
    pub fn timeout(msg: impl Into<String>) -> Self {
        NodeError::Timeout(msg.into())
    }
    pub fn io(msg: impl Into<String>) -> Self {
        NodeError::Io(msg.into())
    }
    pub fn internal(msg: impl Into<String>) -> Self {
        NodeError::Internal(msg.into())
    }

    /// The same error, its message prefixed with `context: `.
    pub fn context(self, context: impl Into<String>) -> Self {
        NodeError::Context {
            context: context.into(),
            source: Box::new(self),
        }
    }

    /// What kind of failure this is (through any context).
    pub fn kind(&self) -> ErrorKind {
        match self {
            NodeError::BadRequest(_) => ErrorKind::BadRequest,
            NodeError::NotFound(_) => ErrorKind::NotFound,
            NodeError::Conflict(_) => ErrorKind::Conflict,
            NodeError::Unsupported(_) => ErrorKind::Unsupported,
            NodeError::CommandFailed(_) | NodeError::Exec(_) => ErrorKind::CommandFailed,
            NodeError::Timeout(_) => ErrorKind::Timeout,
            NodeError::Io(_) => ErrorKind::Io,
            NodeError::Storage(_) => ErrorKind::Storage,
            NodeError::Qmp(_) => ErrorKind::Qmp,
            NodeError::Context { source, .. } => source.kind(),
            NodeError::Internal(_) => ErrorKind::Internal,
            NodeError::Fenced(_) => ErrorKind::Fenced,
        }
    }
}

/// Adds context to the error of a result.
pub trait Context<T> {
    /// Prefixes the error's message with `context: ` (computed only on error).
    fn context_with<C: Into<String>>(self, f: impl FnOnce() -> C) -> NodeResult<T>;
}

impl<T, E: Into<NodeError>> Context<T> for Result<T, E> {
    fn context_with<C: Into<String>>(self, f: impl FnOnce() -> C) -> NodeResult<T> {
        self.map_err(|e| e.into().context(f()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_are_the_plain_text_and_kinds_survive_context() {
        let e = NodeError::not_found("instance x is not running");
        assert_eq!(e.to_string(), "instance x is not running");
        let e = e.context("disk disk/0");
        assert_eq!(e.to_string(), "disk disk/0: instance x is not running");
        assert_eq!(e.kind(), ErrorKind::NotFound);
        let e: NodeError = StorageError::Invalid("bad id".into()).into();
        assert_eq!(e.to_string(), "bad id");
        assert_eq!(e.kind(), ErrorKind::Storage);
    }
}
