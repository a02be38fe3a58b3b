//! STUB until the real module lands.
#[derive(Debug, Clone, PartialEq, Eq)] pub struct SetElem { pub set: String, pub key: Vec<u8>, pub key_end: Option<Vec<u8>> }
#[derive(Debug, Clone, PartialEq, Eq)] pub enum ElemOp { Add(SetElem), Delete(SetElem) }
pub const NFPROTO_BRIDGE: u8 = 7;
#[derive(Debug, thiserror::Error)] #[error("stub")] pub struct NftNetlinkError;
pub fn apply(_f: u8, _t: &str, _o: &[ElemOp]) -> Result<(), NftNetlinkError> { Err(NftNetlinkError) }
pub fn table_exists(_f: u8, _t: &str) -> Result<bool, NftNetlinkError> { Err(NftNetlinkError) }
pub fn list_elements(_f: u8, _t: &str, _s: &str) -> Result<Vec<(Vec<u8>, Option<Vec<u8>>)>, NftNetlinkError> { Err(NftNetlinkError) }
pub fn key_ifname(_n: &str) -> Vec<u8> { vec![] }
pub fn key_ether(_m: [u8; 6]) -> Vec<u8> { vec![] }
pub fn key_ipv4(_a: std::net::Ipv4Addr) -> Vec<u8> { vec![] }
pub fn key_ipv6(_a: std::net::Ipv6Addr) -> Vec<u8> { vec![] }
pub fn concat(_f: &[Vec<u8>]) -> Vec<u8> { vec![] }
