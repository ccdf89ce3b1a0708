//! The PROXY protocol header (HAProxy's, versions 1 and 2) that a load balancer sends
//! before the client's bytes: the client's real address. Read exactly (never past the
//! header), so what follows, TLS or MQTT, is untouched.
//!
//! Used by the front's handshake on listeners with `proxy_protocol = true`; the address
//! it gives is the one logged, judged by authentication and kept with the session.

use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use futures_lite::AsyncReadExt;

use super::Transport;

/// Version 2's signature.
const V2: [u8; 12] = *b"\r\n\r\n\0\r\nQUIT\n";
/// Longest version 1 line (the spec's 107 bytes).
const V1_MAX: usize = 107;
/// Longest version 2 address block read (TLVs included); longer ones are refused.
const V2_MAX: usize = 512;

fn bad(what: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, format!("PROXY protocol: {what}"))
}

/// Reads the header; Ok(None): a header that carries no address (v1 `UNKNOWN`, v2 `LOCAL`
/// or a family other than TCP over IPv4/IPv6): the socket's own peer stands.
pub async fn read_header(stream: &mut Box<dyn Transport>) -> io::Result<Option<SocketAddr>> {
    // 15 bytes: the shortest v1 header ("PROXY UNKNOWN\r\n"), and less than v2's 16.
    let mut head = vec![0u8; 15];
    stream.read_exact(&mut head).await?;
    if head[..12] == V2 {
        let mut rest = [0u8; 1];
        stream.read_exact(&mut rest).await?;
        head.extend_from_slice(&rest);
        let (ver_cmd, family) = (head[12], head[13]);
        let len = usize::from(u16::from_be_bytes([head[14], head[15]]));
        if ver_cmd >> 4 != 2 {
            return Err(bad("version 2 signature with another version"));
        }
        if len > V2_MAX {
            return Err(bad("address block too long"));
        }
        let mut block = vec![0u8; len];
        stream.read_exact(&mut block).await?;
        return Ok(match (ver_cmd & 0x0f, family) {
            (0, _) => None,
            (1, 0x11) if len >= 12 => {
                let ip = Ipv4Addr::new(block[0], block[1], block[2], block[3]);
                Some(SocketAddr::new(IpAddr::V4(ip), u16::from_be_bytes([block[8], block[9]])))
            }
            (1, 0x21) if len >= 36 => {
                let ip: [u8; 16] = block[..16].try_into().expect("16 bytes");
                Some(SocketAddr::new(IpAddr::V6(Ipv6Addr::from(ip)), u16::from_be_bytes([block[32], block[33]])))
            }
            (1, _) => None,
            _ => return Err(bad("unknown command")),
        });
    }
    if !head.starts_with(b"PROXY ") {
        return Err(bad("no header where one is required"));
    }
    while !head.ends_with(b"\r\n") {
        if head.len() >= V1_MAX {
            return Err(bad("version 1 line too long"));
        }
        let mut b = [0u8; 1];
        stream.read_exact(&mut b).await?;
        head.push(b[0]);
    }
    parse_v1(&head[..head.len() - 2])
}

/// A v1 line without its CRLF: `PROXY TCP4|TCP6|UNKNOWN src dst sport dport`.
fn parse_v1(line: &[u8]) -> io::Result<Option<SocketAddr>> {
    let line = std::str::from_utf8(line).map_err(|_| bad("version 1 line is not text"))?;
    let mut f = line.split(' ').skip(1);
    match f.next() {
        Some("UNKNOWN") => Ok(None),
        Some(fam @ ("TCP4" | "TCP6")) => {
            let src: IpAddr = f.next().and_then(|s| s.parse().ok()).ok_or_else(|| bad("source address"))?;
            let _dst: IpAddr = f.next().and_then(|s| s.parse().ok()).ok_or_else(|| bad("destination address"))?;
            let port: u16 = f.next().and_then(|s| s.parse().ok()).ok_or_else(|| bad("source port"))?;
            if (fam == "TCP4") != src.is_ipv4() {
                return Err(bad("address family"));
            }
            Ok(Some(SocketAddr::new(src, port)))
        }
        _ => Err(bad("version 1 protocol")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn version_1_lines_give_the_source_address() {
        let a = parse_v1(b"PROXY TCP4 192.0.2.7 198.51.100.1 40000 1883").unwrap();
        assert_eq!(a, Some("192.0.2.7:40000".parse().unwrap()));
        let a = parse_v1(b"PROXY TCP6 2001:db8::1 2001:db8::2 5 1883").unwrap();
        assert_eq!(a, Some("[2001:db8::1]:5".parse().unwrap()));
        assert_eq!(parse_v1(b"PROXY UNKNOWN").unwrap(), None);
        assert!(parse_v1(b"PROXY TCP4 2001:db8::1 1.2.3.4 5 6").is_err());
        assert!(parse_v1(b"PROXY TCP4 1.2.3.4").is_err());
        assert!(parse_v1(b"PROXY UDP 1.2.3.4 1.2.3.4 1 2").is_err());
    }
}
