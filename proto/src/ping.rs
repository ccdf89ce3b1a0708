//! PINGREQ and PINGRESP (MQTT 3.1.1 sections 3.12-3.13, MQTT 5.0 sections 3.12-3.13):
//! fixed header only; a non-empty body is Malformed.

use bytes::{Bytes, BytesMut};

use crate::codec::{expect_end, guarded, write_fixed_header};
use crate::Error;

/// Checks that a PINGREQ/PINGRESP body is empty.
pub(crate) fn read(body: &Bytes) -> Result<(), Error> {
    expect_end(body)
}

/// Appends a PINGREQ (`c0 00`).
pub(crate) fn write_pingreq(out: &mut BytesMut) -> Result<usize, Error> {
    guarded(out, |out| write_fixed_header(out, 0xc0, 0))
}

/// Appends a PINGRESP (`d0 00`).
pub(crate) fn write_pingresp(out: &mut BytesMut) -> Result<usize, Error> {
    guarded(out, |out| write_fixed_header(out, 0xd0, 0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ping() {
        let mut out = BytesMut::new();
        assert_eq!(write_pingreq(&mut out), Ok(2));
        assert_eq!(write_pingresp(&mut out), Ok(2));
        assert_eq!(&out[..], &[0xc0, 0, 0xd0, 0]);
        assert!(read(&Bytes::new()).is_ok());
        assert!(matches!(read(&Bytes::from_static(&[0])), Err(Error::Malformed(_))));
    }
}
