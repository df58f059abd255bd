//! Follows the message framing of an HTTP/1.1 connection as its bytes arrive, to find
//! requests that carry both `Content-Length` and `Transfer-Encoding`.
//!
//! Such a request is the classic request-smuggling probe: a proxy in front that trusts one
//! header and a server that trusts the other disagree on where the next request starts.
//! hyper follows RFC 9112 (chunked wins, the connection closes afterwards) but drops the
//! `Content-Length` before the application sees the request, so the conflict can only be
//! seen in the bytes. [`Framing`] walks them: it reads each head, then skips its body (a
//! length or the chunked coding) to the next head. Anything it does not understand stops
//! the walk; hyper rejects such input itself.

/// Where the walk is in the byte stream.
#[derive(Debug)]
enum State {
    /// Collecting a request head until its blank line.
    Head,
    /// Skipping this many body bytes.
    Body(u64),
    /// Reading a chunk-size line.
    ChunkSize,
    /// Skipping a chunk's data and the CRLF after it.
    ChunkData(u64),
    /// Reading trailer lines up to the blank one.
    Trailers,
    /// The walk has ended: HTTP/2, a conflict found, or input hyper will reject.
    Done,
}

/// The framing walk of one connection.
#[derive(Debug)]
pub struct Framing {
    state: State,
    /// The partial head or line being collected.
    line: Vec<u8>,
    /// The longest head collected before giving up (hyper answers 431 past its own limit).
    max_head: usize,
    /// Request heads seen so far.
    heads: usize,
    /// Which request (counting from 1) carried both framing headers, if one did.
    conflict: Option<usize>,
}

const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0";
/// The blank line that ends a head.
const HEAD_END: &[u8] = b"\r\n\r\n";

impl Framing {
    /// A walk that gives up on heads longer than `max_head` bytes.
    pub fn new(max_head: usize) -> Self {
        Self {
            state: State::Head,
            line: Vec::new(),
            max_head,
            heads: 0,
            conflict: None,
        }
    }

    /// Which request of the connection (counting from 1) carried both `Content-Length`
    /// and `Transfer-Encoding`, if one did.
    pub fn conflict(&self) -> Option<usize> {
        self.conflict
    }

    /// Whether the walk has ended (nothing more to learn from this connection).
    pub fn done(&self) -> bool {
        matches!(self.state, State::Done)
    }

    /// Feeds the next bytes read from the connection.
    pub fn feed(&mut self, mut bytes: &[u8]) {
        while !bytes.is_empty() {
            match self.state {
                State::Done => return,
                State::Body(left) => {
                    let take = left.min(bytes.len() as u64);
                    bytes = &bytes[take as usize..];
                    self.state = if take == left {
                        State::Head
                    } else {
                        State::Body(left - take)
                    };
                }
                State::ChunkData(left) => {
                    let take = left.min(bytes.len() as u64);
                    bytes = &bytes[take as usize..];
                    self.state = if take == left {
                        State::ChunkSize
                    } else {
                        State::ChunkData(left - take)
                    };
                }
                State::Head => {
                    // The common case: a whole head in one read, walked where it lies.
                    if self.line.is_empty()
                        && let Some(at) = find(bytes, HEAD_END)
                    {
                        let (head, rest) = bytes.split_at(at + HEAD_END.len());
                        bytes = rest;
                        self.state = if head.len() > self.max_head || head.starts_with(H2_PREFACE) {
                            State::Done
                        } else {
                            self.head_done(head)
                        };
                        continue;
                    }
                    let (complete, rest) = self.collect(bytes, HEAD_END);
                    bytes = rest;
                    // The preface and the length are checked whether or not the blank line
                    // has arrived yet, so the verdict does not depend on where the reads
                    // were cut.
                    if self.too_long() || self.line.starts_with(H2_PREFACE) {
                        self.state = State::Done;
                    } else if complete {
                        let line = std::mem::take(&mut self.line);
                        self.state = self.head_done(&line);
                        self.line = line;
                        self.line.clear();
                    }
                }
                State::ChunkSize => {
                    let (complete, rest) = self.collect(bytes, b"\r\n");
                    bytes = rest;
                    if self.too_long() {
                        self.state = State::Done;
                    } else if complete {
                        self.state = self.chunk_size_done();
                        self.line.clear();
                    }
                }
                State::Trailers => {
                    let (complete, rest) = self.collect(bytes, b"\r\n");
                    bytes = rest;
                    if self.too_long() {
                        self.state = State::Done;
                    } else if complete {
                        // A bare CRLF ends the trailers (and the message).
                        if self.line.len() == 2 {
                            self.state = State::Head;
                        }
                        self.line.clear();
                    }
                }
            }
        }
    }

    /// Whether the line collected so far is past the longest head walked (hyper refuses
    /// such a head itself); checked on complete lines too, or a long head read in one
    /// piece would be walked while the same head cut short would not.
    fn too_long(&self) -> bool {
        self.line.len() > self.max_head
    }

    /// Appends bytes to the current line up to and including `end`; says whether `end` was
    /// reached and returns what follows it.
    fn collect<'a>(&mut self, bytes: &'a [u8], end: &[u8]) -> (bool, &'a [u8]) {
        // The terminator may straddle two reads: search from just before the new bytes.
        let from = self.line.len().saturating_sub(end.len() - 1);
        let old = self.line.len();
        self.line.extend_from_slice(bytes);
        match find(&self.line[from..], end) {
            Some(at) => {
                let stop = from + at + end.len();
                self.line.truncate(stop);
                (true, &bytes[stop - old..])
            }
            None => (false, &[]),
        }
    }

    fn head_done(&mut self, head: &[u8]) -> State {
        // Leading empty lines before a request line are allowed (RFC 9112 §2.2).
        let head = trim_leading_crlf(head);
        if head.is_empty() {
            return State::Head;
        }
        self.heads += 1;
        let mut length = None;
        let mut chunked = false;
        let mut transfer_encoding = false;
        for line in head.split(|&b| b == b'\n').skip(1) {
            let Some(colon) = line.iter().position(|&b| b == b':') else {
                continue;
            };
            let name = &line[..colon];
            let value = trim(&line[colon + 1..]);
            if name.eq_ignore_ascii_case(b"content-length") {
                match std::str::from_utf8(value).ok().and_then(|v| v.parse().ok()) {
                    Some(n) => length = Some(n),
                    None => return State::Done,
                }
            } else if name.eq_ignore_ascii_case(b"transfer-encoding") {
                transfer_encoding = true;
                chunked = value
                    .rsplit(|&b| b == b',')
                    .next()
                    .is_some_and(|last| trim(last).eq_ignore_ascii_case(b"chunked"));
            }
        }
        if transfer_encoding && length.is_some() {
            self.conflict = Some(self.heads);
            return State::Done;
        }
        match (transfer_encoding, chunked, length) {
            (true, true, _) => State::ChunkSize,
            (true, false, _) => State::Done,
            (false, _, Some(0) | None) => State::Head,
            (false, _, Some(n)) => State::Body(n),
        }
    }

    fn chunk_size_done(&mut self) -> State {
        let line = trim(&self.line);
        let digits = line.split(|&b| b == b';').next().unwrap_or_default();
        let size = std::str::from_utf8(trim(digits))
            .ok()
            .and_then(|d| u64::from_str_radix(d, 16).ok());
        match size {
            Some(0) => State::Trailers,
            // The chunk's data, then its CRLF.
            Some(n) => n.checked_add(2).map_or(State::Done, State::ChunkData),
            None => State::Done,
        }
    }
}

/// Where `needle` (a line end: it starts with `\r`) first occurs in `haystack`: a jump from
/// one `\r` to the next, which on a head of a few lines costs less than setting up a
/// general substring search.
fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    let first = *needle.first()?;
    let mut from = 0;
    while let Some(skip) = memchr::memchr(first, &haystack[from..]) {
        let at = from + skip;
        if haystack[at..].starts_with(needle) {
            return Some(at);
        }
        from = at + 1;
    }
    None
}

fn trim(bytes: &[u8]) -> &[u8] {
    let start = bytes
        .iter()
        .position(|b| !b.is_ascii_whitespace())
        .unwrap_or(bytes.len());
    let end = bytes
        .iter()
        .rposition(|b| !b.is_ascii_whitespace())
        .map_or(start, |i| i + 1);
    &bytes[start..end.max(start)]
}

fn trim_leading_crlf(bytes: &[u8]) -> &[u8] {
    let start = bytes
        .iter()
        .position(|&b| b != b'\r' && b != b'\n')
        .unwrap_or(bytes.len());
    &bytes[start..]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn walk(input: &[u8], piece: usize) -> Framing {
        let mut framing = Framing::new(16 * 1024);
        for bytes in input.chunks(piece) {
            framing.feed(bytes);
        }
        framing
    }

    fn every_split(input: &[u8], expect_conflict: Option<usize>) {
        for piece in 1..=input.len() {
            assert_eq!(
                walk(input, piece).conflict(),
                expect_conflict,
                "fed in pieces of {piece}: {}",
                String::from_utf8_lossy(input)
            );
        }
    }

    #[test]
    fn both_framing_headers_are_a_conflict_in_either_order() {
        every_split(
            b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
            Some(1),
        );
        every_split(
            b"POST / HTTP/1.1\r\ntransfer-encoding: chunked\r\ncontent-length: 0\r\n\r\n0\r\n\r\n",
            Some(1),
        );
    }

    #[test]
    fn a_conflict_after_bodies_of_both_kinds_is_found() {
        let input = b"POST /a HTTP/1.1\r\nContent-Length: 29\r\n\r\n{\"x\":\"Transfer-Encoding: a\"}\nGET /b HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n1c;ext=1\r\nContent-Length: 3\r\n\r\nabcdefg\r\n0\r\nTrailer: x\r\n\r\nPOST /c HTTP/1.1\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n";
        every_split(input, Some(3));
    }

    #[test]
    fn header_names_in_bodies_are_not_a_conflict() {
        let input = b"POST /a HTTP/1.1\r\nContent-Length: 47\r\n\r\nPOST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nGET /b HTTP/1.1\r\nHost: x\r\n\r\n";
        every_split(input, None);
        let chunked = b"POST /a HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n13\r\nContent-Length: 9\r\n\r\n0\r\n\r\nGET / HTTP/1.1\r\n\r\n";
        every_split(chunked, None);
        assert!(!walk(chunked, 7).done(), "the walk reached the last head");
    }

    #[test]
    fn http2_and_unreadable_framing_end_the_walk() {
        // In one read or in many: the fuzzer found the walk ending only when cut.
        let preface = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
        for piece in 1..=preface.len() {
            assert!(walk(preface, piece).done(), "fed in pieces of {piece}");
        }
        assert!(walk(b"POST / HTTP/1.1\r\nContent-Length: x\r\n\r\n", 4).done());
        assert!(walk(b"POST / HTTP/1.1\r\nTransfer-Encoding: gzip\r\n\r\n", 4).done());
        let mut long = Framing::new(64);
        long.feed(&[b'a'; 100]);
        assert!(long.done(), "an overlong head is left to hyper's limit");
        // Complete in one read or cut anywhere (the fuzzer found a head past the limit
        // walked, and its conflict reported, only when it came whole).
        let mut head = b"POST / HTTP/1.1\r\nX-Pad: ".to_vec();
        head.extend_from_slice(&[b'a'; 100]);
        head.extend_from_slice(b"\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n");
        for piece in 1..=head.len() {
            let mut walk = Framing::new(64);
            for bytes in head.chunks(piece) {
                walk.feed(bytes);
            }
            assert!(walk.done(), "fed in pieces of {piece}");
            assert_eq!(walk.conflict(), None, "fed in pieces of {piece}");
        }
    }
}
