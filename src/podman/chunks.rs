//! The read loop both exec readers share (the attached exec's HTTP body and
//! the duplex exec's raw socket): decode what is buffered, else take more
//! from the source, and stop for good after an error or the end.

use std::future::Future;

use bytes::Bytes;

use super::PodmanError;
use super::attach::{ExecChunk, FrameDecoder, Framing};

/// What a source gave when asked for more.
pub(super) enum Fill {
    Data(Bytes),
    /// A clean end of the bytes.
    Eof,
    Broken(PodmanError),
}

/// Where a [`ChunkReader`] takes bytes from.
pub(super) trait Source {
    fn fill(&mut self) -> impl Future<Output = Fill> + Send;
}

#[derive(Debug)]
pub(super) struct ChunkReader {
    decoder: FrameDecoder,
    pending: Bytes,
    done: bool,
}

impl ChunkReader {
    pub(super) fn new(framing: Framing) -> Self {
        ChunkReader {
            decoder: FrameDecoder::new(framing),
            pending: Bytes::new(),
            done: false,
        }
    }

    /// Bytes read but not yet decoded.
    pub(super) fn pending(&self) -> usize {
        self.pending.len()
    }

    pub(super) fn is_done(&self) -> bool {
        self.done
    }

    /// The next chunk from `src`; `None` at a clean end, and after an error.
    pub(super) async fn next(
        &mut self,
        src: &mut impl Source,
    ) -> Option<Result<ExecChunk, PodmanError>> {
        loop {
            if self.done {
                return None;
            }
            match self.decoder.decode(&mut self.pending) {
                Ok(Some(chunk)) => return Some(Ok(chunk)),
                Ok(None) => {}
                Err(e) => {
                    self.done = true;
                    return Some(Err(e.into()));
                }
            }
            match src.fill().await {
                Fill::Data(data) => self.pending = data,
                Fill::Eof => {
                    self.done = true;
                    // EOF inside a frame is an error; between frames, the end.
                    return self.decoder.finish().err().map(|e| Err(e.into()));
                }
                Fill::Broken(e) => {
                    self.done = true;
                    return Some(Err(e));
                }
            }
        }
    }
}
