//! The few DER readings the broker does itself: one element (tag, contents, rest) and
//! the elements of a constructed one. Inputs were verified by rustls or ring first, or
//! are public keys from the configuration; whatever does not parse reads as nothing.
//!
//! A leaf, used by `net::x509` (client certificate names) and `auth::jwt` (public keys).

/// One DER element: its tag, its contents and what follows it.
pub fn tlv(input: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let (&tag, rest) = input.split_first()?;
    let (&first, rest) = rest.split_first()?;
    let (len, rest) = if first < 0x80 {
        (usize::from(first), rest)
    } else {
        let n = usize::from(first & 0x7f);
        if n == 0 || n > 4 || rest.len() < n {
            return None;
        }
        let len = rest[..n].iter().fold(0usize, |acc, b| (acc << 8) | usize::from(*b));
        (len, &rest[n..])
    };
    (rest.len() >= len).then(|| (tag, &rest[..len], &rest[len..]))
}

/// The elements of a constructed element's contents, in order.
pub fn children(mut input: &[u8]) -> impl Iterator<Item = (u8, &[u8])> {
    std::iter::from_fn(move || {
        let (tag, body, rest) = tlv(input)?;
        input = rest;
        Some((tag, body))
    })
}
