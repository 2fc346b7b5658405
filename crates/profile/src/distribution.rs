//! Where a certificate's revocation status is published: the CRL partition
//! chosen from its serial, the distribution point URL and the delta CRL URL
//! (freshestCRL). The CRL publisher uses the same functions, so a certificate
//! and the CRL that lists it always agree.

/// The CRL partition of a certificate: 1..=`partitions`, from the big-endian
/// value of the serial's last 8 octets modulo `partitions`; 0 when
/// partitioning is off (`partitions == 0`). Leading zero octets do not matter.
pub fn crl_partition(serial: &[u8], partitions: u32) -> u32 {
    if partitions == 0 {
        return 0;
    }
    let tail = &serial[serial.len().saturating_sub(8)..];
    let value = tail.iter().fold(0u64, |acc, b| (acc << 8) | u64::from(*b));
    // The remainder is below `partitions`, a u32, so it fits.
    (value % u64::from(partitions)) as u32 + 1
}

/// The CRL distribution point of the certificate with `serial`: the CA's CRL
/// URL, or its partition's URL when partitions are on.
pub fn crl_distribution_url(ca_crl_url: &str, serial: &[u8], partitions: u32) -> String {
    match crl_partition(serial, partitions) {
        0 => ca_crl_url.to_owned(),
        p => partition_url(ca_crl_url, p),
    }
}

/// The delta CRL that goes with the full CRL at `crl_url` (freshestCRL).
pub fn freshest_crl_url(crl_url: &str) -> String {
    delta_url(crl_url)
}

/// `http://h/crl/sign.crl` -> `http://h/crl/sign-p3.crl`.
pub fn partition_url(base: &str, partition: u32) -> String {
    with_suffix(base, &format!("-p{partition}"))
}

/// `http://h/crl/sign.crl` -> `http://h/crl/sign-delta.crl`.
pub fn delta_url(base: &str) -> String {
    with_suffix(base, "-delta")
}

fn with_suffix(base: &str, suffix: &str) -> String {
    let file_start = base.rfind('/').map_or(0, |i| i + 1);
    match base[file_start..].rfind('.') {
        Some(dot) => format!("{}{suffix}{}", &base[..file_start + dot], &base[file_start + dot..]),
        None => format!("{base}{suffix}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partition_is_zero_when_off_and_in_range_when_on() {
        assert_eq!(crl_partition(&[1, 2, 3], 0), 0);
        for n in [1u32, 2, 7, 16, 1000] {
            for serial in [&[0x01][..], &[0x7f; 16], &[0x12, 0x34, 0x56, 0x78, 0x9a, 0xbc, 0xde, 0xf0, 0x11]] {
                let p = crl_partition(serial, n);
                assert!((1..=n).contains(&p), "{p} not in 1..={n}");
            }
        }
    }

    #[test]
    fn partition_uses_the_last_eight_octets_big_endian() {
        // ...00 00 00 00 00 00 00 0b = 11; 11 % 4 = 3 -> partition 4.
        assert_eq!(crl_partition(&[0xff, 0, 0, 0, 0, 0, 0, 0, 0x0b], 4), 4);
        // Leading zero octets and octets before the last 8 do not change it.
        assert_eq!(crl_partition(&[0x0b], 4), 4);
        assert_eq!(crl_partition(&[0, 0, 0x0b], 4), 4);
        assert_eq!(crl_partition(&[0x01, 0x00, 0x01], 2), 2); // 257 % 2 = 1
        assert_eq!(crl_partition(&[], 5), 1); // empty: value 0, never a panic
        assert_eq!(crl_partition(&[0xff; 20], u32::MAX), (u64::MAX % u64::from(u32::MAX)) as u32 + 1);
    }

    #[test]
    fn partitions_spread_random_looking_serials() {
        let mut counts = [0u32; 8];
        let mut x = 0x9e37_79b9_7f4a_7c15u64;
        for _ in 0..8000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let mut serial = [0u8; 16];
            serial[8..].copy_from_slice(&x.to_be_bytes());
            counts[(crl_partition(&serial, 8) - 1) as usize] += 1;
        }
        assert!(counts.iter().all(|c| (800..1200).contains(c)), "{counts:?}");
    }

    #[test]
    fn distribution_and_delta_urls() {
        let base = "http://h:1/crl/sign.crl";
        assert_eq!(crl_distribution_url(base, &[0x0b], 0), base);
        assert_eq!(crl_distribution_url(base, &[0x0b], 4), "http://h:1/crl/sign-p4.crl");
        assert_eq!(freshest_crl_url(base), "http://h:1/crl/sign-delta.crl");
        assert_eq!(freshest_crl_url("http://h:1/crl/sign-p4.crl"), "http://h:1/crl/sign-p4-delta.crl");
    }
}
