//! Frame Streams (the framing dnstap rides in), the writer's side of its bidirectional
//! handshake: READY naming the content type, the reader's ACCEPT, START, then data frames (a
//! 4-byte big-endian length and the payload), and at the end STOP, answered by FINISH. A
//! control frame is escaped by a zero length, then its own length, type and fields.
//!
//! What the reader sends is read with caps and checks: junk is an error, never a panic or an
//! unbounded allocation.

use std::io::{Read, Write};

/// The content type of dnstap.
pub const DNSTAP: &[u8] = b"protobuf:dnstap.Dnstap";

pub const ACCEPT: u32 = 0x01;
pub const START: u32 = 0x02;
pub const STOP: u32 = 0x03;
pub const READY: u32 = 0x04;
pub const FINISH: u32 = 0x05;

/// The one control field: a content type.
const FIELD_CONTENT_TYPE: u32 = 0x01;
/// The largest control frame read (fstrm's own limit).
const MAX_CONTROL: u32 = 512;

/// What went wrong talking to the reader.
#[derive(Debug, thiserror::Error)]
pub enum FrameError {
    #[error(transparent)]
    Io(#[from] std::io::Error),
    #[error("expected a control frame, got a data frame")]
    NotControl,
    #[error("control frame of {0} bytes (more than {MAX_CONTROL})")]
    TooLong(u32),
    #[error("malformed control frame")]
    Malformed,
    #[error("expected control frame {wanted}, got {got}")]
    Unexpected { wanted: u32, got: u32 },
    #[error("the collector does not accept {}", String::from_utf8_lossy(DNSTAP))]
    ContentType,
}

/// A control frame as read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Control {
    pub kind: u32,
    pub content_types: Vec<Vec<u8>>,
}

/// A control frame, escaped, with `content_type` as its field if given.
pub fn control_frame(kind: u32, content_type: Option<&[u8]>) -> Vec<u8> {
    let mut body = kind.to_be_bytes().to_vec();
    if let Some(ct) = content_type {
        body.extend_from_slice(&FIELD_CONTENT_TYPE.to_be_bytes());
        body.extend_from_slice(&(ct.len() as u32).to_be_bytes());
        body.extend_from_slice(ct);
    }
    let mut frame = 0u32.to_be_bytes().to_vec();
    frame.extend_from_slice(&(body.len() as u32).to_be_bytes());
    frame.extend_from_slice(&body);
    frame
}

/// Appends a data frame whose payload, `len` bytes, `write` appends to `out`: a payload
/// encoded in place, without a buffer of its own.
pub fn data_frame_by(len: usize, out: &mut Vec<u8>, write: impl FnOnce(&mut Vec<u8>)) {
    out.extend_from_slice(&(len as u32).to_be_bytes());
    write(out);
}

/// Reads one control frame.
pub fn read_control(r: &mut impl Read) -> Result<Control, FrameError> {
    let mut word = [0u8; 4];
    r.read_exact(&mut word)?;
    if u32::from_be_bytes(word) != 0 {
        return Err(FrameError::NotControl);
    }
    r.read_exact(&mut word)?;
    let len = u32::from_be_bytes(word);
    if len > MAX_CONTROL {
        return Err(FrameError::TooLong(len));
    }
    let mut body = vec![0u8; len as usize];
    r.read_exact(&mut body)?;
    parse_control(&body)
}

/// A control frame's body: its type, then fields (type, length, value).
pub fn parse_control(body: &[u8]) -> Result<Control, FrameError> {
    let (kind, mut rest) = take_u32(body).ok_or(FrameError::Malformed)?;
    let mut content_types = Vec::new();
    while !rest.is_empty() {
        let (field, after) = take_u32(rest).ok_or(FrameError::Malformed)?;
        let (len, after) = take_u32(after).ok_or(FrameError::Malformed)?;
        let len = usize::try_from(len).map_err(|_| FrameError::Malformed)?;
        if after.len() < len {
            return Err(FrameError::Malformed);
        }
        let (value, after) = after.split_at(len);
        if field == FIELD_CONTENT_TYPE {
            content_types.push(value.to_vec());
        }
        rest = after;
    }
    Ok(Control {
        kind,
        content_types,
    })
}

fn take_u32(b: &[u8]) -> Option<(u32, &[u8])> {
    let (word, rest) = b.split_first_chunk::<4>()?;
    Some((u32::from_be_bytes(*word), rest))
}

/// Opens a stream on `stream`: READY, the reader's ACCEPT (which must list dnstap), START.
pub fn handshake(stream: &mut (impl Read + Write)) -> Result<(), FrameError> {
    stream.write_all(&control_frame(READY, Some(DNSTAP)))?;
    let accept = read_control(stream)?;
    if accept.kind != ACCEPT {
        return Err(FrameError::Unexpected {
            wanted: ACCEPT,
            got: accept.kind,
        });
    }
    if !accept.content_types.iter().any(|ct| ct == DNSTAP) {
        return Err(FrameError::ContentType);
    }
    stream.write_all(&control_frame(START, Some(DNSTAP)))?;
    stream.flush()?;
    Ok(())
}

/// Ends a stream: STOP, then the reader's FINISH.
pub fn finish(stream: &mut (impl Read + Write)) -> Result<(), FrameError> {
    stream.write_all(&control_frame(STOP, None))?;
    stream.flush()?;
    let finish = read_control(stream)?;
    match finish.kind {
        FINISH => Ok(()),
        got => Err(FrameError::Unexpected {
            wanted: FINISH,
            got,
        }),
    }
}

#[cfg(test)]
mod tests {
    use std::io::{BufReader, Cursor};
    use std::os::unix::net::{UnixListener, UnixStream};

    use super::*;

    /// A reader's side: READY in, ACCEPT out, START in, data frames, STOP in, FINISH out.
    fn collect(stream: UnixStream) -> Vec<Vec<u8>> {
        let mut r = BufReader::new(stream.try_clone().unwrap());
        let mut w = stream;
        let ready = read_control(&mut r).unwrap();
        assert_eq!(ready.kind, READY);
        assert_eq!(ready.content_types, [DNSTAP.to_vec()]);
        w.write_all(&control_frame(ACCEPT, Some(DNSTAP))).unwrap();
        let start = read_control(&mut r).unwrap();
        assert_eq!(
            (start.kind, start.content_types),
            (START, vec![DNSTAP.to_vec()])
        );
        let mut frames = Vec::new();
        loop {
            let mut len = [0u8; 4];
            r.read_exact(&mut len).unwrap();
            let len = u32::from_be_bytes(len);
            if len == 0 {
                let mut clen = [0u8; 4];
                r.read_exact(&mut clen).unwrap();
                let mut body = vec![0u8; u32::from_be_bytes(clen) as usize];
                r.read_exact(&mut body).unwrap();
                assert_eq!(parse_control(&body).unwrap().kind, STOP);
                w.write_all(&control_frame(FINISH, None)).unwrap();
                return frames;
            }
            let mut frame = vec![0u8; len as usize];
            r.read_exact(&mut frame).unwrap();
            frames.push(frame);
        }
    }

    #[test]
    fn a_stream_opens_carries_frames_and_closes() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("collector.sock");
        let listener = UnixListener::bind(&path).unwrap();
        let reader = std::thread::spawn(move || collect(listener.accept().unwrap().0));
        let mut stream = UnixStream::connect(&path).unwrap();
        handshake(&mut stream).unwrap();
        let mut out = Vec::new();
        for payload in [&b"first"[..], b"second frame"] {
            data_frame_by(payload.len(), &mut out, |out| {
                out.extend_from_slice(payload)
            });
        }
        stream.write_all(&out).unwrap();
        finish(&mut stream).unwrap();
        assert_eq!(
            reader.join().unwrap(),
            [b"first".to_vec(), b"second frame".to_vec()]
        );
    }

    #[test]
    fn a_reader_that_wants_another_content_type_is_refused() {
        let mut reply = control_frame(ACCEPT, Some(b"protobuf:other"));
        let mut duplex = Duplex::new(&mut reply);
        assert!(matches!(
            handshake(&mut duplex),
            Err(FrameError::ContentType)
        ));
        let mut reply = control_frame(FINISH, None);
        let mut duplex = Duplex::new(&mut reply);
        assert!(matches!(
            handshake(&mut duplex),
            Err(FrameError::Unexpected { got: FINISH, .. })
        ));
    }

    #[test]
    fn junk_from_the_reader_is_an_error_not_a_panic() {
        let cases: Vec<Vec<u8>> = vec![
            vec![],
            vec![0, 0],
            vec![0, 0, 0, 5, b'h', b'e', b'l', b'l', b'o'],
            vec![0, 0, 0, 0, 0xff, 0xff, 0xff, 0xff],
            vec![0, 0, 0, 0, 0, 0, 0, 3, 1, 2, 3],
            // ACCEPT with a field longer than the frame
            [
                &[0, 0, 0, 0, 0, 0, 0, 12][..],
                &1u32.to_be_bytes(),
                &1u32.to_be_bytes(),
                &[0, 0, 0, 200],
            ]
            .concat(),
            // ACCEPT with half a field header
            [&[0, 0, 0, 0, 0, 0, 0, 6][..], &1u32.to_be_bytes(), &[0, 1]].concat(),
        ];
        for junk in cases {
            assert!(read_control(&mut Cursor::new(&junk)).is_err(), "{junk:?}");
        }
        for len in 0..64 {
            let bytes: Vec<u8> = (0..len).map(|i| (i * 37 + 11) as u8).collect();
            let _ = parse_control(&bytes);
        }
        let accept = read_control(&mut Cursor::new(control_frame(ACCEPT, Some(DNSTAP)))).unwrap();
        assert_eq!(accept.content_types, [DNSTAP.to_vec()]);
    }

    /// Writes go nowhere; reads come from a canned reply.
    struct Duplex<'a> {
        reply: Cursor<&'a mut Vec<u8>>,
    }

    impl<'a> Duplex<'a> {
        fn new(reply: &'a mut Vec<u8>) -> Self {
            Duplex {
                reply: Cursor::new(reply),
            }
        }
    }

    impl Read for Duplex<'_> {
        fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
            self.reply.read(buf)
        }
    }

    impl Write for Duplex<'_> {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
}
