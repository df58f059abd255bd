//! A writer of small MaxMind DB files (format 2.0) mapping networks to countries, so tests
//! of country lookups run on a real database file made in the test, not on a download.
//!
//! The file is an IPv6 search tree (IPv4 networks sit under `::/96`, where readers look
//! for them), 32-bit records, and one data record per network shaped like GeoIP2-Country's:
//! `{"country": {"iso_code": "FR"}}`. Only what the tests need is written; the layout
//! follows the format's specification (tree, 16 zero bytes, data section, metadata marker,
//! metadata map).

use std::net::IpAddr;

/// The bytes that open the metadata section.
const METADATA_MARKER: &[u8] = b"\xAB\xCD\xEFMaxMind.com";

/// A child of a tree node: another node, nothing, or a record of the data section.
#[derive(Clone, Copy)]
enum Child {
    Node(usize),
    Empty,
    Data(usize),
}

/// A database where each `(address, prefix length, ISO country code)` network maps to its
/// country. Later networks win over earlier ones where they overlap.
pub fn country_db(networks: &[(IpAddr, u8, &str)]) -> Vec<u8> {
    let mut nodes: Vec<[Child; 2]> = vec![[Child::Empty; 2]];
    let mut data = Vec::new();
    for &(address, prefix, country) in networks {
        let (bits, depth) = match address {
            IpAddr::V4(v4) => (u128::from(u32::from(v4)), 96 + u32::from(prefix.min(32))),
            IpAddr::V6(v6) => (u128::from(v6), u32::from(prefix.min(128))),
        };
        assert!(depth > 0, "a network of prefix 0 has no place in the tree");
        let offset = data.len();
        let mut record = Writer::default();
        record.map(1);
        record.string("country");
        record.map(1);
        record.string("iso_code");
        record.string(country);
        data.extend_from_slice(&record.0);
        let mut node = 0;
        for level in 0..depth {
            let bit = ((bits >> (127 - level)) & 1) as usize;
            if level + 1 == depth {
                nodes[node][bit] = Child::Data(offset);
                break;
            }
            node = match nodes[node][bit] {
                Child::Node(next) => next,
                // A wider network already there: its record is kept on both sides below.
                inherited => {
                    nodes.push([inherited; 2]);
                    let next = nodes.len() - 1;
                    nodes[node][bit] = Child::Node(next);
                    next
                }
            };
        }
    }

    let count = nodes.len();
    let mut file = Vec::with_capacity(count * 8 + 16 + data.len() + 256);
    for node in &nodes {
        for child in node {
            let value = match *child {
                Child::Node(next) => next,
                Child::Empty => count,
                Child::Data(offset) => count + 16 + offset,
            };
            let value = u32::try_from(value).expect("a small database");
            file.extend_from_slice(&value.to_be_bytes());
        }
    }
    file.extend_from_slice(&[0; 16]);
    file.extend_from_slice(&data);
    file.extend_from_slice(METADATA_MARKER);
    let mut meta = Writer::default();
    meta.map(9);
    meta.string("binary_format_major_version");
    meta.uint(5, 2);
    meta.string("binary_format_minor_version");
    meta.uint(5, 0);
    meta.string("build_epoch");
    meta.uint(9, 1_700_000_000);
    meta.string("database_type");
    meta.string("Basis-Test-Country");
    meta.string("description");
    meta.map(1);
    meta.string("en");
    meta.string("Countries for tests");
    meta.string("ip_version");
    meta.uint(5, 6);
    meta.string("languages");
    meta.array(1);
    meta.string("en");
    meta.string("node_count");
    meta.uint(6, count as u64);
    meta.string("record_size");
    meta.uint(5, 32);
    file.extend_from_slice(&meta.0);
    file
}

/// Values of the format's data section.
#[derive(Default)]
struct Writer(Vec<u8>);

impl Writer {
    /// A control byte (and the extended type byte for types above 7) with `size`.
    fn control(&mut self, kind: u8, size: usize) {
        let (low, extra): (u8, Vec<u8>) = match size {
            0..=28 => (size as u8, Vec::new()),
            29..=284 => (29, vec![(size - 29) as u8]),
            _ => {
                let rest = u16::try_from(size - 285).expect("a short value");
                (30, rest.to_be_bytes().to_vec())
            }
        };
        if kind <= 7 {
            self.0.push((kind << 5) | low);
        } else {
            self.0.push(low);
            self.0.push(kind - 7);
        }
        self.0.extend_from_slice(&extra);
    }

    fn string(&mut self, text: &str) {
        self.control(2, text.len());
        self.0.extend_from_slice(text.as_bytes());
    }

    fn map(&mut self, pairs: usize) {
        self.control(7, pairs);
    }

    fn array(&mut self, items: usize) {
        self.control(11, items);
    }

    /// An unsigned integer of type `kind` (5: uint16, 6: uint32, 9: uint64), in as few
    /// big-endian bytes as it needs.
    fn uint(&mut self, kind: u8, value: u64) {
        let bytes = value.to_be_bytes();
        let skip = bytes.iter().take_while(|b| **b == 0).count();
        self.control(kind, 8 - skip);
        self.0.extend_from_slice(&bytes[skip..]);
    }
}
