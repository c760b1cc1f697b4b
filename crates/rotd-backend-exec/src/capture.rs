//! Bounded, zeroizing capture of a plug-in's stdout and stderr.

use rotd_core::Secret;
use tokio::io::{AsyncRead, AsyncReadExt};

/// How much of each stream is kept. A plug-in that prints more is drained (so it never blocks on a full
/// pipe) but cannot make rotd hold more than this in memory.
pub const OUTPUT_LIMIT: usize = 64 * 1024;

const CHUNK: usize = 8 * 1024;

/// Which end of an over-long stream to keep.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Keep {
    /// The first [`OUTPUT_LIMIT`] bytes: stdout, where the response is the only thing of interest.
    Head,
    /// The last [`OUTPUT_LIMIT`] bytes: stderr, whose end usually explains a failure.
    Tail,
}

/// The kept bytes of one stream. The output may contain the secret value (a plug-in echoing its request),
/// so the buffer is allocated once at its final size and zeroized when dropped.
pub(crate) struct Capture {
    buf: Vec<u8>,
    keep: Keep,
    /// Bytes were discarded at the front (`Tail`) or the back (`Head`).
    pub(crate) truncated: bool,
}

impl Capture {
    fn new(keep: Keep) -> Self {
        // `Tail` appends up to a whole chunk past the limit before it shifts the window forward.
        let capacity = match keep {
            Keep::Head => OUTPUT_LIMIT,
            Keep::Tail => OUTPUT_LIMIT + CHUNK,
        };
        Self {
            buf: Vec::with_capacity(capacity),
            keep,
            truncated: false,
        }
    }

    pub(crate) fn bytes(&self) -> &[u8] {
        &self.buf
    }

    fn push(&mut self, data: &[u8]) {
        match self.keep {
            Keep::Head => {
                let room = OUTPUT_LIMIT - self.buf.len();
                let take = data.len().min(room);
                self.buf.extend_from_slice(&data[..take]);
                self.truncated |= take < data.len();
            }
            Keep::Tail => {
                // Shifting in place never grows the allocation beyond its initial capacity.
                self.buf.extend_from_slice(data);
                if self.buf.len() > OUTPUT_LIMIT {
                    let excess = self.buf.len() - OUTPUT_LIMIT;
                    self.buf.drain(..excess);
                    self.truncated = true;
                }
            }
        }
    }
}

impl Drop for Capture {
    fn drop(&mut self) {
        // `Secret` zeroizes the whole allocation, spare capacity included, on drop.
        drop(Secret::new(std::mem::take(&mut self.buf)));
    }
}

/// Reads `reader` to end-of-file, keeping one end of it.
pub(crate) async fn capture<R: AsyncRead + Unpin>(reader: Option<R>, keep: Keep) -> Capture {
    let mut captured = Capture::new(keep);
    let Some(mut reader) = reader else {
        return captured;
    };
    let mut chunk = [0u8; CHUNK];
    loop {
        match reader.read(&mut chunk).await {
            Ok(0) => break,
            Ok(n) => captured.push(&chunk[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            // A read error on a pipe means the plug-in's end is gone; what was read so far is all there is.
            Err(_) => break,
        }
    }
    chunk.fill(0);
    std::hint::black_box(&chunk);
    captured
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn head_keeps_the_first_bytes() {
        let mut c = Capture::new(Keep::Head);
        let capacity = c.buf.capacity();
        for _ in 0..20 {
            c.push(&[b'a'; CHUNK]);
        }
        c.push(b"end");
        assert_eq!(c.bytes().len(), OUTPUT_LIMIT);
        assert!(c.truncated);
        assert_eq!(c.buf.capacity(), capacity);
    }

    #[test]
    fn tail_keeps_the_last_bytes_without_reallocating() {
        let mut c = Capture::new(Keep::Tail);
        let capacity = c.buf.capacity();
        for _ in 0..20 {
            c.push(&[b'a'; CHUNK]);
        }
        c.push(b"end");
        assert_eq!(c.bytes().len(), OUTPUT_LIMIT);
        assert!(c.bytes().ends_with(b"aend"));
        assert!(c.truncated);
        assert_eq!(c.buf.capacity(), capacity);
    }

    #[test]
    fn short_output_is_kept_whole() {
        let mut c = Capture::new(Keep::Tail);
        c.push(b"hello");
        assert_eq!(c.bytes(), b"hello");
        assert!(!c.truncated);
    }
}
