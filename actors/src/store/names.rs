//! Stream names: [`Stream`] (borrowed) and [`StreamName`] (owned), and the key prefix a stream's
//! counter and messages share. A leaf of the store (it imports nothing of it), so that both the key
//! encoding (`keys.rs`) and the change feed (`changes.rs`) can name streams.

/// A message stream: a client's inbox or a room.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Stream<'a> {
    Inbox(&'a str),
    Room(&'a str),
}

impl Stream<'_> {
    /// `i:<client>\0` or `r:<room>\0`: the stream's counter, and the prefix of its messages.
    pub(super) fn key(self) -> Vec<u8> {
        let (tag, name) = match self {
            Stream::Inbox(c) => (b"i:", c),
            Stream::Room(r) => (b"r:", r),
        };
        let mut k = Vec::with_capacity(name.len() + 11);
        k.extend_from_slice(tag);
        k.extend_from_slice(name.as_bytes());
        k.push(0);
        k
    }
}

/// An owned stream name.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum StreamName {
    Inbox(String),
    Room(String),
}

impl StreamName {
    /// The owned name of a stream.
    pub fn of(stream: Stream<'_>) -> Self {
        match stream {
            Stream::Inbox(c) => StreamName::Inbox(c.to_owned()),
            Stream::Room(r) => StreamName::Room(r.to_owned()),
        }
    }

    pub fn as_stream(&self) -> Stream<'_> {
        match self {
            StreamName::Inbox(c) => Stream::Inbox(c),
            StreamName::Room(r) => Stream::Room(r),
        }
    }

    /// Reads back what [`Stream::key`] wrote.
    pub(super) fn from_key(key: &[u8]) -> Option<Self> {
        let (tag, rest) = key.split_at_checked(2)?;
        let name = String::from_utf8_lossy(rest.strip_suffix(&[0])?).into_owned();
        match tag {
            b"i:" => Some(StreamName::Inbox(name)),
            b"r:" => Some(StreamName::Room(name)),
            _ => None,
        }
    }
}

