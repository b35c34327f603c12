//! Just enough of RESP2 (the Redis protocol) for the cluster: commands out, replies and
//! pub/sub pushes in. What Redis sends is parsed with limits (sizes, nesting) and typed
//! errors, like any other input from the network.

use std::path::PathBuf;
use std::pin::Pin;

use bytes::{Buf, Bytes, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpStream, UnixStream};

/// The largest bulk string accepted from Redis (an envelope is far smaller).
const MAX_BULK: usize = 16 * 1024 * 1024;
/// The most elements in one reply array (a roster of a very large room, say).
const MAX_ARRAY: usize = 1 << 20;
/// How deeply replies may nest.
const MAX_DEPTH: usize = 4;

/// One RESP2 reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Value {
    Simple(String),
    Error(String),
    Int(i64),
    Bulk(Option<Bytes>),
    Array(Option<Vec<Value>>),
}

impl Value {
    pub(crate) fn as_bytes(&self) -> Option<&[u8]> {
        match self {
            Value::Bulk(Some(bytes)) => Some(bytes),
            Value::Simple(text) => Some(text.as_bytes()),
            _ => None,
        }
    }

    pub(crate) fn as_int(&self) -> Option<i64> {
        match self {
            Value::Int(n) => Some(*n),
            Value::Bulk(Some(bytes)) => std::str::from_utf8(bytes).ok()?.parse().ok(),
            _ => None,
        }
    }
}

/// Why talking to Redis failed.
#[derive(Debug, thiserror::Error)]
pub enum RespError {
    /// The connection failed or closed.
    #[error("redis connection: {0}")]
    Io(#[from] std::io::Error),
    /// Redis sent something that is not RESP2 within our limits.
    #[error("bad reply from redis: {0}")]
    Protocol(&'static str),
    /// The URL is not one we can use.
    #[error("bad redis url: {0}")]
    Url(String),
    /// Redis refused a command.
    #[error("redis error: {0}")]
    Refused(String),
}

/// Where Redis is: `redis://[:password@]host:port[/db]` or `redis+unix:///path[?db=N]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RedisUrl {
    addr: Addr,
    password: Option<String>,
    db: u32,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Addr {
    Tcp(String),
    Unix(PathBuf),
}

impl RedisUrl {
    /// Parses a Redis URL.
    pub fn parse(url: &str) -> Result<RedisUrl, RespError> {
        let bad = |why: &str| RespError::Url(format!("{url}: {why}"));
        if let Some(rest) = url.strip_prefix("redis+unix://") {
            let (path, query) = rest.split_once('?').unwrap_or((rest, ""));
            if path.is_empty() {
                return Err(bad("no socket path"));
            }
            let mut db = 0;
            for pair in query.split('&').filter(|p| !p.is_empty()) {
                if let Some(n) = pair.strip_prefix("db=") {
                    db = n.parse().map_err(|_| bad("bad db"))?;
                }
            }
            return Ok(RedisUrl {
                addr: Addr::Unix(PathBuf::from(path)),
                password: None,
                db,
            });
        }
        if url.starts_with("rediss://") {
            return Err(bad("TLS to Redis (rediss://) is not supported yet"));
        }
        let rest = url
            .strip_prefix("redis://")
            .ok_or_else(|| bad("expected redis:// or redis+unix://"))?;
        let (authority, path) = rest.split_once('/').unwrap_or((rest, ""));
        let (password, host) = match authority.rsplit_once('@') {
            Some((user_info, host)) => {
                let password = user_info.split_once(':').map_or(user_info, |(_, p)| p);
                (Some(password.to_owned()).filter(|p| !p.is_empty()), host)
            }
            None => (None, authority),
        };
        if host.is_empty() {
            return Err(bad("no host"));
        }
        let host = if host.contains(':') && !host.ends_with(']') {
            host.to_owned()
        } else {
            format!("{host}:6379")
        };
        let db = if path.is_empty() {
            0
        } else {
            path.parse().map_err(|_| bad("bad db"))?
        };
        Ok(RedisUrl {
            addr: Addr::Tcp(host),
            password,
            db,
        })
    }
}

type Stream = Pin<Box<dyn AsyncReadWrite>>;
trait AsyncReadWrite: AsyncRead + AsyncWrite + Send {}
impl<T: AsyncRead + AsyncWrite + Send> AsyncReadWrite for T {}

/// One connection to Redis: write commands, read replies in order.
pub(crate) struct Conn {
    stream: Stream,
    buf: BytesMut,
}

impl Conn {
    /// Connects, authenticates and selects the database.
    pub(crate) async fn open(url: &RedisUrl) -> Result<Conn, RespError> {
        let stream: Stream = match &url.addr {
            Addr::Tcp(host) => {
                let tcp = TcpStream::connect(host).await?;
                tcp.set_nodelay(true)?;
                Box::pin(tcp)
            }
            Addr::Unix(path) => Box::pin(UnixStream::connect(path).await?),
        };
        let mut conn = Conn {
            stream,
            buf: BytesMut::with_capacity(16 * 1024),
        };
        if let Some(password) = &url.password {
            conn.call(&[b"AUTH", password.as_bytes()]).await?;
        }
        if url.db != 0 {
            conn.call(&[b"SELECT", url.db.to_string().as_bytes()])
                .await?;
        }
        Ok(conn)
    }

    /// Sends one command and reads its reply; an error reply is `Refused`.
    pub(crate) async fn call(&mut self, args: &[&[u8]]) -> Result<Value, RespError> {
        let mut out = Vec::new();
        encode(&mut out, args);
        self.write(&out).await?;
        match self.read().await? {
            Value::Error(message) => Err(RespError::Refused(message)),
            value => Ok(value),
        }
    }

    pub(crate) async fn write(&mut self, bytes: &[u8]) -> Result<(), RespError> {
        self.stream.write_all(bytes).await?;
        Ok(())
    }

    /// Reads the next reply or push.
    pub(crate) async fn read(&mut self) -> Result<Value, RespError> {
        loop {
            if let Some((value, used)) = parse(&self.buf)? {
                self.buf.advance(used);
                return Ok(value);
            }
            if self.stream.read_buf(&mut self.buf).await? == 0 {
                return Err(RespError::Io(std::io::ErrorKind::UnexpectedEof.into()));
            }
        }
    }
}

/// Appends one command as a RESP array of bulk strings.
pub(crate) fn encode(out: &mut Vec<u8>, args: &[&[u8]]) {
    out.push(b'*');
    out.extend_from_slice(args.len().to_string().as_bytes());
    out.extend_from_slice(b"\r\n");
    for arg in args {
        out.push(b'$');
        out.extend_from_slice(arg.len().to_string().as_bytes());
        out.extend_from_slice(b"\r\n");
        out.extend_from_slice(arg);
        out.extend_from_slice(b"\r\n");
    }
}

/// Parses one value from the front of `buf`: `None` if more bytes are needed.
pub(crate) fn parse(buf: &[u8]) -> Result<Option<(Value, usize)>, RespError> {
    parse_at(buf, 0, 0)
}

fn parse_at(buf: &[u8], at: usize, depth: usize) -> Result<Option<(Value, usize)>, RespError> {
    if depth > MAX_DEPTH {
        return Err(RespError::Protocol("nested too deeply"));
    }
    let Some(line_end) = find_crlf(buf, at) else {
        if buf.len() - at > 64 * 1024 {
            return Err(RespError::Protocol("header line too long"));
        }
        return Ok(None);
    };
    let Some(&tag) = buf.get(at) else {
        return Ok(None);
    };
    let line = &buf[at + 1..line_end];
    let next = line_end + 2;
    let text = || std::str::from_utf8(line).map_err(|_| RespError::Protocol("not UTF-8"));
    match tag {
        b'+' => Ok(Some((Value::Simple(text()?.to_owned()), next))),
        b'-' => Ok(Some((Value::Error(text()?.to_owned()), next))),
        b':' => {
            let n = text()?
                .parse()
                .map_err(|_| RespError::Protocol("bad integer"))?;
            Ok(Some((Value::Int(n), next)))
        }
        b'$' => {
            let len: i64 = text()?
                .parse()
                .map_err(|_| RespError::Protocol("bad length"))?;
            if len < 0 {
                return Ok(Some((Value::Bulk(None), next)));
            }
            let len = usize::try_from(len).map_err(|_| RespError::Protocol("bad length"))?;
            if len > MAX_BULK {
                return Err(RespError::Protocol("bulk string too large"));
            }
            if buf.len() < next + len + 2 {
                return Ok(None);
            }
            if &buf[next + len..next + len + 2] != b"\r\n" {
                return Err(RespError::Protocol("bulk string not terminated"));
            }
            let bytes = Bytes::copy_from_slice(&buf[next..next + len]);
            Ok(Some((Value::Bulk(Some(bytes)), next + len + 2)))
        }
        b'*' => {
            let len: i64 = text()?
                .parse()
                .map_err(|_| RespError::Protocol("bad length"))?;
            if len < 0 {
                return Ok(Some((Value::Array(None), next)));
            }
            let len = usize::try_from(len).map_err(|_| RespError::Protocol("bad length"))?;
            if len > MAX_ARRAY {
                return Err(RespError::Protocol("array too large"));
            }
            let mut items = Vec::with_capacity(len.min(64));
            let mut at = next;
            for _ in 0..len {
                match parse_at(buf, at, depth + 1)? {
                    Some((value, used)) => {
                        items.push(value);
                        at = used;
                    }
                    None => return Ok(None),
                }
            }
            Ok(Some((Value::Array(Some(items)), at)))
        }
        _ => Err(RespError::Protocol("unknown type byte")),
    }
}

fn find_crlf(buf: &[u8], from: usize) -> Option<usize> {
    buf.get(from..)?
        .windows(2)
        .position(|w| w == b"\r\n")
        .map(|i| from + i)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replies_parse_whole_or_wait_for_more() {
        let reply = b"*3\r\n$7\r\nmessage\r\n$2\r\nch\r\n$4\r\na\r\nb\r\n";
        for cut in 0..reply.len() {
            assert_eq!(parse(&reply[..cut]).unwrap(), None, "cut at {cut}");
        }
        let (value, used) = parse(reply).unwrap().unwrap();
        assert_eq!(used, reply.len());
        let Value::Array(Some(items)) = value else {
            panic!()
        };
        assert_eq!(items[2].as_bytes(), Some(&b"a\r\nb"[..]));
        assert_eq!(
            parse(b":42\r\n").unwrap(),
            Some((Value::Int(42), 5)),
            "integers"
        );
        assert!(matches!(
            parse(b"-ERR no\r\n").unwrap(),
            Some((Value::Error(_), _))
        ));
    }

    #[test]
    fn hostile_replies_are_errors_not_panics() {
        for bad in [
            &b"$-5x\r\n"[..],
            b"$99999999999\r\n",
            b"*99999999999\r\n",
            b"?\r\n",
            b"$3\r\nabcXY",
            b"*1\r\n*1\r\n*1\r\n*1\r\n*1\r\n*1\r\n:1\r\n",
        ] {
            assert!(parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn urls() {
        let url = RedisUrl::parse("redis://:pw@127.0.0.1:7000/2").unwrap();
        assert_eq!(url.addr, Addr::Tcp("127.0.0.1:7000".into()));
        assert_eq!((url.password.as_deref(), url.db), (Some("pw"), 2));
        let url = RedisUrl::parse("redis://localhost").unwrap();
        assert_eq!(url.addr, Addr::Tcp("localhost:6379".into()));
        let url = RedisUrl::parse("redis+unix:///tmp/r.sock?db=1").unwrap();
        assert_eq!(url.addr, Addr::Unix("/tmp/r.sock".into()));
        assert_eq!(url.db, 1);
        assert!(RedisUrl::parse("http://x").is_err());
        assert!(RedisUrl::parse("rediss://x").is_err());
    }
}
