//! Output files: buffered [`std::io::Write`], and splicing an HTTP body in.

use std::io;

use crate::bindings::corral::integration::output::{self, File};
use crate::bindings::wasi::io::streams::{OutputStream, StreamError};
use crate::http::Response;

pub use crate::bindings::corral::integration::output::OutputError;

/// Bytes gathered before they are handed to the host in one call.
const BUFFER_BYTES: usize = 1 << 20;

/// One output file being written. Bytes written through [`io::Write`] are
/// buffered and handed to the host a megabyte at a time; [`Output::splice`]
/// moves an HTTP body host-side without copying it into the guest.
///
/// Call [`Output::finish`] at the end: an output dropped unfinished is discarded
/// and fails the job.
pub struct Output {
    // Field order matters: the stream must be dropped before the file.
    stream: Option<OutputStream>,
    file: File,
    buffer: Vec<u8>,
}

impl Output {
    /// Starts the output file `name` (a plain file name) of `content_type`.
    pub fn create(name: &str, content_type: &str) -> Result<Output, OutputError> {
        let file = output::create(name, content_type)?;
        let stream = file.stream()?;
        Ok(Output {
            stream: Some(stream),
            file,
            buffer: Vec::with_capacity(BUFFER_BYTES),
        })
    }

    /// Moves the body of `response` into this file, host-side: the bytes never
    /// enter guest memory. `on_progress` is called with the bytes moved so far
    /// after every chunk. Returns the number of bytes moved.
    pub fn splice(
        &mut self,
        response: Response,
        mut on_progress: impl FnMut(u64),
    ) -> io::Result<u64> {
        self.flush_buffer()?;
        let (body, input) = response.into_body_stream()?;
        let stream = self.stream()?;
        let mut moved = 0u64;
        loop {
            match stream.blocking_splice(&input, u64::MAX) {
                Ok(0) => input.subscribe().block(),
                Ok(n) => {
                    moved += n;
                    on_progress(moved);
                }
                Err(StreamError::Closed) => break,
                Err(StreamError::LastOperationFailed(error)) => {
                    return Err(io::Error::other(error.to_debug_string()));
                }
            }
        }
        drop(input);
        drop(body);
        Ok(moved)
    }

    /// Stores everything written and keeps the file; returns its length.
    pub fn finish(mut self) -> Result<u64, OutputError> {
        self.flush_buffer()
            .and_then(|()| self.flush_stream())
            .map_err(|error| OutputError::Failed(error.to_string()))?;
        drop(self.stream.take());
        self.file.finish()
    }

    fn stream(&self) -> io::Result<&OutputStream> {
        self.stream
            .as_ref()
            .ok_or_else(|| io::Error::other("output already finished"))
    }

    fn flush_buffer(&mut self) -> io::Result<()> {
        if self.buffer.is_empty() {
            return Ok(());
        }
        let buffer = std::mem::take(&mut self.buffer);
        let result = write_all(self.stream()?, &buffer);
        self.buffer = buffer;
        self.buffer.clear();
        result
    }

    fn flush_stream(&self) -> io::Result<()> {
        let stream = self.stream()?;
        stream.flush().map_err(stream_error)?;
        stream.subscribe().block();
        stream.check_write().map(drop).map_err(stream_error)
    }
}

/// Writes all of `bytes`, waiting for the host whenever it pushes back.
fn write_all(stream: &OutputStream, mut bytes: &[u8]) -> io::Result<()> {
    while !bytes.is_empty() {
        let permitted = stream.check_write().map_err(stream_error)?;
        if permitted == 0 {
            stream.subscribe().block();
            continue;
        }
        let n = bytes
            .len()
            .min(usize::try_from(permitted).unwrap_or(usize::MAX));
        stream.write(&bytes[..n]).map_err(stream_error)?;
        bytes = &bytes[n..];
    }
    Ok(())
}

fn stream_error(error: StreamError) -> io::Error {
    match error {
        StreamError::Closed => io::Error::new(io::ErrorKind::BrokenPipe, "output stream closed"),
        StreamError::LastOperationFailed(error) => io::Error::other(error.to_debug_string()),
    }
}

impl io::Write for Output {
    fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
        if self.buffer.len() + bytes.len() > BUFFER_BYTES {
            self.flush_buffer()?;
        }
        if bytes.len() >= BUFFER_BYTES {
            write_all(self.stream()?, bytes)?;
        } else {
            self.buffer.extend_from_slice(bytes);
        }
        Ok(bytes.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        self.flush_buffer()?;
        self.flush_stream()
    }
}
