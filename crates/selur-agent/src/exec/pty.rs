//! The master side of an exec'd process's terminal (see
//! `selur_runtime::terminal`), read and written asynchronously: the
//! non-blocking master is registered with tokio's reactor through duplicated
//! descriptors (one for output, one for input), which
//! `tokio::net::unix::pipe` drives like a pipe's two ends.

use std::io;
use std::os::fd::OwnedFd;

use rustix::process::{kill_process, Pid, Signal};
use tokio::net::unix::pipe;

/// A terminal master. Reading `output` fails with `EIO` once every process
/// holding the slave has closed it: that is its end of file.
pub(crate) struct Pty {
    pub(crate) output: pipe::Receiver,
    pub(crate) input: PtyInput,
}

/// The writing side of the terminal, with the control of its size.
pub(crate) struct PtyInput {
    pub(crate) writer: pipe::Sender,
    control: OwnedFd,
    /// runc, which copies the size to the container's terminal on `SIGWINCH`.
    runc: Option<Pid>,
}

impl Pty {
    pub(crate) fn new(master: OwnedFd, runc: Option<u32>) -> io::Result<Self> {
        rustix::io::ioctl_fionbio(&master, true)?;
        let output = pipe::Receiver::from_owned_fd_unchecked(master.try_clone()?)?;
        let writer = pipe::Sender::from_owned_fd_unchecked(master.try_clone()?)?;
        Ok(Self {
            output,
            input: PtyInput {
                writer,
                control: master,
                runc: runc.and_then(|p| Pid::from_raw(p as i32)),
            },
        })
    }
}

impl PtyInput {
    /// Set the window size and tell runc, which passes it on; the process gets `SIGWINCH`.
    pub(crate) fn resize(&self, cols: u16, rows: u16) -> io::Result<()> {
        selur_runtime::terminal::set_window_size(&self.control, cols, rows)?;
        if let Some(pid) = self.runc {
            kill_process(pid, Signal::WINCH)?;
        }
        Ok(())
    }
}
