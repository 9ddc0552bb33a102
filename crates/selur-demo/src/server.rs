//! The HTTP server: one thread per connection, keep-alive, and a graceful
//! stop (no new connections, in-flight requests finish, idle keep-alive
//! connections close).

use std::io::{self, ErrorKind, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use crate::http::{head_end, parse_head, Response, MAX_HEAD};
use crate::log::{log, object, Val};
use crate::web::App;

/// How often blocked reads wake up to look at the stop flag.
const POLL: Duration = Duration::from_millis(200);
/// An idle keep-alive connection is closed after this long.
const IDLE: Duration = Duration::from_secs(15);
/// A request must arrive completely within this long of its first byte.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// Largest request body read (and discarded).
const MAX_BODY: usize = 1024 * 1024;
/// How long a stop waits for in-flight requests.
const DRAIN: Duration = Duration::from_secs(25);

/// Tells a running [`serve`] to stop.
#[derive(Debug)]
pub struct Stop {
    flag: AtomicBool,
    /// A duplicate of the listening socket's descriptor, so it stays valid
    /// for `trigger` whenever that runs.
    listener: TcpListener,
}

impl Stop {
    /// A stop handle for `listener`.
    pub fn new(listener: &TcpListener) -> io::Result<Arc<Self>> {
        Ok(Arc::new(Stop {
            flag: AtomicBool::new(false),
            listener: listener.try_clone()?,
        }))
    }

    /// Stop accepting: the blocked `accept` returns and [`serve`] drains.
    pub fn trigger(&self) {
        if self.flag.swap(true, Ordering::SeqCst) {
            return;
        }
        // SAFETY: shutdown(2) on a descriptor this handle owns; on Linux it
        // ends the listen and wakes a thread blocked in accept(2).
        unsafe {
            libc::shutdown(self.listener.as_raw_fd(), libc::SHUT_RDWR);
        }
    }

    fn stopping(&self) -> bool {
        self.flag.load(Ordering::SeqCst)
    }
}

/// Connections being served.
#[derive(Debug, Default)]
struct Inflight {
    n: Mutex<usize>,
    done: Condvar,
}

struct InflightGuard(Arc<Inflight>);

impl InflightGuard {
    fn new(i: &Arc<Inflight>) -> Self {
        if let Ok(mut n) = i.n.lock() {
            *n += 1;
        }
        InflightGuard(Arc::clone(i))
    }
}

impl Drop for InflightGuard {
    fn drop(&mut self) {
        if let Ok(mut n) = self.0.n.lock() {
            *n = n.saturating_sub(1);
            self.0.done.notify_all();
        }
    }
}

/// Accept and serve connections on `listener` until `stop` is triggered,
/// then wait (bounded) for the connections in flight.
pub fn serve(listener: TcpListener, app: Arc<App>, stop: Arc<Stop>) {
    let inflight = Arc::new(Inflight::default());
    loop {
        match listener.accept() {
            Ok((stream, _)) if !stop.stopping() => {
                let guard = InflightGuard::new(&inflight);
                let (app, stop) = (Arc::clone(&app), Arc::clone(&stop));
                let spawned = std::thread::Builder::new().spawn(move || {
                    let _guard = guard;
                    connection(stream, &app, &stop);
                });
                if let Err(e) = spawned {
                    log(
                        "error",
                        "cannot start a connection thread",
                        &[("error", Val::Str(&e.to_string()))],
                    );
                }
            }
            Ok(_) => break,
            Err(_) if stop.stopping() => break,
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) => {
                // Out of descriptors or memory: back off rather than spin.
                log(
                    "error",
                    "accept failed",
                    &[("error", Val::Str(&e.to_string()))],
                );
                std::thread::sleep(Duration::from_millis(50));
            }
        }
    }
    drop(listener);
    let deadline = Instant::now() + DRAIN;
    if let Ok(mut n) = inflight.n.lock() {
        while *n > 0 {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                log(
                    "warn",
                    "connections still open at the end of the drain",
                    &[("connections", Val::Int(*n as i64))],
                );
                break;
            }
            match inflight.done.wait_timeout(n, left) {
                Ok((g, _)) => n = g,
                Err(_) => return,
            }
        }
    };
}

/// What reading the next request gave.
enum Next {
    /// A complete head ends at this index of the buffer.
    Head(usize, Instant),
    /// Answer with this status and close (the request is unusable).
    Fail(u16, &'static str, Instant),
    /// Close without answering.
    Close,
}

fn read_head(s: &mut TcpStream, buf: &mut Vec<u8>, stop: &Stop) -> Next {
    let mut idle = Duration::ZERO;
    let mut first_byte = (!buf.is_empty()).then(Instant::now);
    let mut chunk = [0u8; 4096];
    loop {
        if let Some(end) = head_end(buf) {
            return Next::Head(end, first_byte.unwrap_or_else(Instant::now));
        }
        if buf.len() > MAX_HEAD {
            return Next::Fail(
                431,
                "request head too large",
                first_byte.unwrap_or_else(Instant::now),
            );
        }
        match s.read(&mut chunk) {
            Ok(0) => return Next::Close,
            Ok(n) => {
                first_byte.get_or_insert_with(Instant::now);
                buf.extend_from_slice(&chunk[..n]);
            }
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                match first_byte {
                    None => {
                        idle += POLL;
                        if stop.stopping() || idle >= IDLE {
                            return Next::Close;
                        }
                    }
                    Some(t) if t.elapsed() >= REQUEST_TIMEOUT => {
                        return Next::Fail(408, "request timed out", t)
                    }
                    Some(_) => {}
                }
            }
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(_) => return Next::Close,
        }
    }
}

/// Read `len` more body bytes beyond what `buf` holds after `start`.
fn read_body(s: &mut TcpStream, buf: &mut Vec<u8>, start: usize, len: usize) -> io::Result<()> {
    let mut chunk = [0u8; 8192];
    let began = Instant::now();
    while buf.len() < start + len {
        match s.read(&mut chunk) {
            Ok(0) => return Err(ErrorKind::UnexpectedEof.into()),
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                if began.elapsed() >= REQUEST_TIMEOUT {
                    return Err(e);
                }
            }
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

fn log_request(method: &str, path: &str, status: u16, since: Instant) {
    let ms = since.elapsed().as_secs_f64() * 1000.0;
    log(
        "info",
        "request",
        &[
            ("method", Val::Str(method)),
            ("path", Val::Str(path)),
            ("status", Val::Int(i64::from(status))),
            ("duration_ms", Val::Num(ms)),
        ],
    );
}

fn fail(s: &mut TcpStream, app: &App, status: u16, why: &str, since: Instant) {
    let r = Response::json(status, object(&[("error", Val::Str(why))]));
    let _ = s.write_all(&r.encode(false, false));
    app.record("other", status);
    log_request("-", "-", status, since);
}

/// Serve requests on one connection until either side closes it.
fn connection(mut s: TcpStream, app: &App, stop: &Stop) {
    if s.set_read_timeout(Some(POLL)).is_err() {
        return;
    }
    let _ = s.set_nodelay(true);
    let mut buf = Vec::new();
    loop {
        let (end, since) = match read_head(&mut s, &mut buf, stop) {
            Next::Head(end, t) => (end, t),
            Next::Fail(status, why, t) => return fail(&mut s, app, status, why, t),
            Next::Close => return,
        };
        let req = match parse_head(&buf[..end]) {
            Ok(r) => r,
            Err(why) => return fail(&mut s, app, 400, why, since),
        };
        let body = match req.body_len() {
            Ok(n) if n > MAX_BODY => {
                return fail(&mut s, app, 413, "request body too large", since)
            }
            Ok(n) => n,
            Err(why) => return fail(&mut s, app, 501, why, since),
        };
        if read_body(&mut s, &mut buf, end, body).is_err() {
            return;
        }
        let (resp, route) = app.route(&req, Instant::now());
        let keep = req.keep_alive() && !stop.stopping();
        let wrote = s.write_all(&resp.encode(keep, req.method == "HEAD"));
        app.record(route, resp.status);
        log_request(&req.method, &req.path, resp.status, since);
        if wrote.is_err() || !keep {
            return;
        }
        buf.drain(..end + body);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::web::Config;
    use std::io::{BufRead, BufReader};

    fn start() -> (std::net::SocketAddr, Arc<Stop>, std::thread::JoinHandle<()>) {
        let listener = TcpListener::bind("[::1]:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let cfg = Config::from_env("my-service", |_| None).unwrap();
        let app = Arc::new(App::new(cfg, "h".into()));
        let stop = Stop::new(&listener).unwrap();
        let s = Arc::clone(&stop);
        let t = std::thread::spawn(move || serve(listener, app, s));
        (addr, stop, t)
    }

    /// Read one response (head and Content-Length body).
    fn response(r: &mut BufReader<TcpStream>) -> (String, String) {
        let mut head = String::new();
        loop {
            let mut l = String::new();
            r.read_line(&mut l).unwrap();
            if l == "\r\n" || l.is_empty() {
                break;
            }
            head.push_str(&l);
        }
        let len: usize = head
            .lines()
            .find_map(|l| l.strip_prefix("Content-Length: "))
            .unwrap()
            .parse()
            .unwrap();
        let mut body = vec![0; len];
        r.read_exact(&mut body).unwrap();
        (head, String::from_utf8(body).unwrap())
    }

    #[test]
    fn serves_keep_alive_requests_and_stops_gracefully() {
        let (addr, stop, t) = start();
        let c = TcpStream::connect(addr).unwrap();
        let mut w = c.try_clone().unwrap();
        let mut r = BufReader::new(c);
        // Two pipelined requests, one with a body, on one connection.
        w.write_all(
            b"POST /x HTTP/1.1\r\nContent-Length: 3\r\n\r\nabcGET /health HTTP/1.1\r\n\r\n",
        )
        .unwrap();
        let (head, _) = response(&mut r);
        assert!(head.starts_with("HTTP/1.1 404 Not Found\r\n"), "{head}");
        let (head, body) = response(&mut r);
        assert!(head.starts_with("HTTP/1.1 200 OK\r\n"), "{head}");
        assert!(head.contains("Connection: keep-alive"));
        assert_eq!(body, r#"{"status":"ok"}"#);
        // Another connection is served concurrently while the first is idle.
        let mut c2 = TcpStream::connect(addr).unwrap();
        c2.write_all(b"GET /api/a HTTP/1.0\r\n\r\n").unwrap();
        let mut all = String::new();
        c2.read_to_string(&mut all).unwrap();
        assert!(all.contains("\"service\":\"my-service\""), "{all}");
        // Stopping closes the idle keep-alive connection and returns.
        stop.trigger();
        t.join().unwrap();
        let mut rest = Vec::new();
        assert_eq!(r.read_to_end(&mut rest).unwrap(), 0);
        assert!(TcpStream::connect(addr).is_err());
    }

    #[test]
    fn a_request_in_flight_at_stop_is_still_answered() {
        let (addr, stop, t) = start();
        let mut c = TcpStream::connect(addr).unwrap();
        c.write_all(b"GET /health HTTP/1.1\r\n").unwrap();
        std::thread::sleep(Duration::from_millis(300));
        stop.trigger();
        std::thread::sleep(Duration::from_millis(300));
        assert!(
            !t.is_finished(),
            "serve returned before the request finished"
        );
        c.write_all(b"\r\n").unwrap();
        let mut all = String::new();
        c.read_to_string(&mut all).unwrap();
        assert!(all.starts_with("HTTP/1.1 200 OK\r\n"), "{all}");
        assert!(all.contains("Connection: close\r\n"), "{all}");
        t.join().unwrap();
    }

    #[test]
    fn garbage_gets_400_and_close() {
        let (addr, stop, t) = start();
        let mut c = TcpStream::connect(addr).unwrap();
        c.write_all(b"HELLO\r\n\r\n").unwrap();
        let mut all = String::new();
        c.read_to_string(&mut all).unwrap();
        assert!(all.starts_with("HTTP/1.1 400 Bad Request\r\n"), "{all}");
        stop.trigger();
        t.join().unwrap();
    }
}
