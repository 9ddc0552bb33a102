//! Terminals for `exec -t`: a pseudo-terminal pair whose slave side becomes
//! the stdio of `runc exec --tty`, and its window size.
//!
//! runc refuses `--console-socket` unless it detaches, and a detached exec
//! loses the exit code (the process is no longer runc's child, nor ours).
//! So runc stays attached and allocates the container's terminal itself,
//! copying between it and its own stdio; its stdio is this pair's slave, so
//! runc finds a terminal there (it puts it in raw mode and takes the window
//! size from it on start and on `SIGWINCH`). The container's process gets a
//! proper controlling terminal (job control, ^C) from runc.

use std::os::fd::{AsFd, OwnedFd};

use rustix::pty::OpenptFlags;

/// A new pseudo-terminal in raw mode: `(master, slave)`, both close-on-exec
/// (the slave still reaches a child as its stdio).
pub fn open_pty() -> std::io::Result<(OwnedFd, OwnedFd)> {
    let flags = OpenptFlags::RDWR | OpenptFlags::NOCTTY | OpenptFlags::CLOEXEC;
    let master = rustix::pty::openpt(flags)?;
    rustix::pty::grantpt(&master)?;
    rustix::pty::unlockpt(&master)?;
    let slave = match rustix::pty::ioctl_tiocgptpeer(&master, flags) {
        Ok(s) => s,
        // Kernels before 4.13: open the slave by name.
        Err(_) => {
            let name = rustix::pty::ptsname(&master, Vec::new())?;
            rustix::fs::open(
                name.as_c_str(),
                rustix::fs::OFlags::RDWR | rustix::fs::OFlags::NOCTTY | rustix::fs::OFlags::CLOEXEC,
                rustix::fs::Mode::empty(),
            )?
        }
    };
    // Raw, so that bytes (^C, ^D included) pass through to runc untouched;
    // the container's own terminal does the line discipline.
    let mut t = rustix::termios::tcgetattr(&slave)?;
    t.make_raw();
    rustix::termios::tcsetattr(&slave, rustix::termios::OptionalActions::Now, &t)?;
    Ok((master, slave))
}

/// Set a terminal's window size (`TIOCSWINSZ`).
pub fn set_window_size(fd: impl AsFd, cols: u16, rows: u16) -> std::io::Result<()> {
    rustix::termios::tcsetwinsize(
        fd,
        rustix::termios::Winsize {
            ws_row: rows,
            ws_col: cols,
            ws_xpixel: 0,
            ws_ypixel: 0,
        },
    )?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};

    #[test]
    fn pair_carries_bytes_and_size() {
        let (master, slave) = open_pty().unwrap();
        assert!(rustix::termios::isatty(&slave));
        set_window_size(&master, 100, 30).unwrap();
        let ws = rustix::termios::tcgetwinsize(&slave).unwrap();
        assert_eq!((ws.ws_col, ws.ws_row), (100, 30));
        let mut m = std::fs::File::from(master);
        let mut s = std::fs::File::from(slave);
        s.write_all(b"out").unwrap();
        let mut buf = [0u8; 3];
        m.read_exact(&mut buf).unwrap();
        assert_eq!(&buf, b"out");
        // Raw: ^D and newlines pass as bytes, nothing is echoed.
        m.write_all(b"a\x04\n").unwrap();
        let mut got = [0u8; 3];
        s.read_exact(&mut got).unwrap();
        assert_eq!(&got, b"a\x04\n");
    }
}
