//! Just enough DER to read who a client certificate names: the subject's Common Name and
//! the DNS and e-mail Subject Alternative Names. rustls has verified the certificate
//! before anything here reads it; a certificate this does not understand names no one.
//!
//! Used by [`super::tls::identity_of`].

/// OID 2.5.4.3, commonName.
const CN: &[u8] = &[0x55, 0x04, 0x03];
/// OID 2.5.29.17, subjectAltName.
const SAN: &[u8] = &[0x55, 0x1d, 0x11];

use crate::der::{children, tlv};

/// The TBSCertificate's fields after the version: serial, signature, issuer, validity,
/// subject, key, then the optional tagged ones.
fn tbs_fields(cert: &[u8]) -> Option<Vec<(u8, &[u8])>> {
    let (_, cert, _) = tlv(cert)?;
    let (_, tbs, _) = tlv(cert)?;
    Some(children(tbs).filter(|(tag, _)| *tag != 0xa0).collect())
}

/// The subject's first Common Name.
pub fn common_name(cert: &[u8]) -> Option<String> {
    let fields = tbs_fields(cert)?;
    let (_, subject) = fields.get(4)?;
    for (_, rdn) in children(subject) {
        for (_, atv) in children(rdn) {
            let mut parts = children(atv);
            let (oid_tag, oid) = parts.next()?;
            let (_, value) = parts.next()?;
            if oid_tag == 0x06 && oid == CN {
                return String::from_utf8(value.to_vec()).ok();
            }
        }
    }
    None
}

/// The first DNS name or e-mail address among the Subject Alternative Names.
pub fn first_san(cert: &[u8]) -> Option<String> {
    let fields = tbs_fields(cert)?;
    let (_, exts) = fields.iter().find(|(tag, _)| *tag == 0xa3)?;
    let (_, exts, _) = tlv(exts)?;
    for (_, ext) in children(exts) {
        let mut parts = children(ext);
        let (_, oid) = parts.next()?;
        if oid != SAN {
            continue;
        }
        let (_, value) = parts.find(|(tag, _)| *tag == 0x04)?;
        let (_, names, _) = tlv(value)?;
        return children(names)
            .find(|(tag, _)| *tag == 0x81 || *tag == 0x82)
            .and_then(|(_, n)| String::from_utf8(n.to_vec()).ok());
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_truncated_or_empty_certificate_names_no_one() {
        assert_eq!(common_name(&[]), None);
        assert_eq!(common_name(&[0x30, 0x82, 0xff]), None);
        assert_eq!(first_san(&[0x30, 0x03, 0x30, 0x01]), None);
    }
}
