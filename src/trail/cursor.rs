//! The page cursor of a device's trail: opaque to clients, it names the device it was given
//! for and the last row of the page, so a cursor from another device's trail is refused rather
//! than read as a position in this one.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;

use crate::policy::DeviceId;

/// Where the next page starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cursor {
    pub device: DeviceId,
    /// The id of the last row given.
    pub after: i64,
}

/// Why a cursor was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum CursorError {
    #[error("cursor is malformed: pass the `next` value of the page before, as it was")]
    Malformed,
    #[error("cursor belongs to another device's trail")]
    OtherDevice,
}

const VERSION: &str = "t1";

impl Cursor {
    pub fn encode(self) -> String {
        let text = format!("{VERSION}:{}:{}", self.device.0, self.after);
        URL_SAFE_NO_PAD.encode(text)
    }

    /// Reads a cursor given for `device`'s trail.
    pub fn decode(text: &str, device: DeviceId) -> Result<Cursor, CursorError> {
        let bytes = URL_SAFE_NO_PAD
            .decode(text.trim())
            .map_err(|_| CursorError::Malformed)?;
        let text = std::str::from_utf8(&bytes).map_err(|_| CursorError::Malformed)?;
        let mut parts = text.split(':');
        let (Some(VERSION), Some(id), Some(after), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(CursorError::Malformed);
        };
        let id: u64 = id.parse().map_err(|_| CursorError::Malformed)?;
        let after: i64 = after.parse().map_err(|_| CursorError::Malformed)?;
        if after < 0 {
            return Err(CursorError::Malformed);
        }
        if DeviceId(id) != device {
            return Err(CursorError::OtherDevice);
        }
        Ok(Cursor { device, after })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cursor_reads_back_for_its_device_only() {
        let c = Cursor {
            device: DeviceId(7),
            after: 1234,
        };
        let text = c.encode();
        assert_eq!(Cursor::decode(&text, DeviceId(7)), Ok(c));
        assert_eq!(
            Cursor::decode(&text, DeviceId(8)),
            Err(CursorError::OtherDevice)
        );
        for junk in [
            "",
            "!!",
            "dDE6Nzo",
            "eDE6NzoxMjM0",
            &URL_SAFE_NO_PAD.encode("t1:7:-1"),
        ] {
            assert_eq!(
                Cursor::decode(junk, DeviceId(7)),
                Err(CursorError::Malformed),
                "{junk}"
            );
        }
    }
}
