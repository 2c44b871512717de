//! The I/O: each adapter talks to one service, behind [`Publisher`] where the handlers need to
//! swap it in tests.

pub mod aws;
pub mod retry_queue;
pub mod secret;
pub mod sns;
pub mod upstream;

pub use sns::Publisher;
