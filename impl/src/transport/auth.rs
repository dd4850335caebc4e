//! Mutual authentication of peers: a challenge–response over the cluster secret.
//!
//! The dialer sends a fresh nonce; the acceptor answers with its own nonce and
//! `HMAC-SHA-256(secret, "shoal acceptor" ‖ both nonces ‖ both node ids ‖ both boots)`; the
//! dialer checks it and answers with the same MAC under the label "shoal dialer". Each side
//! thus proves it holds the secret without sending it, and a recorded exchange cannot be
//! replayed: the other side's nonce is new every time. Tags are compared in constant time
//! (`Mac::verify_slice`).

use super::frame::{Nonce, Proof};
use crate::ids::NodeId;
use hmac::{Hmac, Mac};
use sha2::Sha256;

/// The cluster's shared secret.
#[derive(Clone)]
pub struct Secret(Vec<u8>);

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(..)")
    }
}

/// Shortest secret accepted, in bytes.
pub const MIN_SECRET: usize = 16;

impl Secret {
    /// A secret from its bytes; `None` if shorter than [`MIN_SECRET`].
    pub fn new(bytes: Vec<u8>) -> Option<Secret> {
        (bytes.len() >= MIN_SECRET).then_some(Secret(bytes))
    }
}

/// What both proofs are computed over.
#[derive(Clone, Copy, Debug)]
pub struct Transcript {
    /// The dialer.
    pub dialer: NodeId,
    /// The acceptor.
    pub acceptor: NodeId,
    /// The dialer's boot number.
    pub dialer_boot: u64,
    /// The acceptor's boot number.
    pub acceptor_boot: u64,
    /// The dialer's nonce.
    pub dialer_nonce: Nonce,
    /// The acceptor's nonce.
    pub acceptor_nonce: Nonce,
}

/// Which side proves.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    /// The node that opened the connection.
    Dialer,
    /// The node that accepted it.
    Acceptor,
}

fn mac(secret: &Secret, role: Role, t: &Transcript) -> Hmac<Sha256> {
    // HMAC accepts keys of any length.
    let mut m = match Hmac::<Sha256>::new_from_slice(&secret.0) {
        Ok(m) => m,
        Err(_) => unreachable!("HMAC takes keys of any length"),
    };
    m.update(match role {
        Role::Dialer => b"shoal dialer",
        Role::Acceptor => b"shoal acceptor",
    });
    m.update(&t.dialer_nonce);
    m.update(&t.acceptor_nonce);
    m.update(&t.dialer.0.to_be_bytes());
    m.update(&t.acceptor.0.to_be_bytes());
    m.update(&t.dialer_boot.to_be_bytes());
    m.update(&t.acceptor_boot.to_be_bytes());
    m
}

/// The proof `role` sends.
pub fn prove(secret: &Secret, role: Role, t: &Transcript) -> Proof {
    mac(secret, role, t).finalize().into_bytes().into()
}

/// Whether `proof` is what `role` must have sent.
pub fn verify(secret: &Secret, role: Role, t: &Transcript, proof: &Proof) -> bool {
    mac(secret, role, t).verify_slice(proof).is_ok()
}

/// A fresh random nonce.
pub fn nonce() -> Nonce {
    rand::random()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn transcript() -> Transcript {
        Transcript {
            dialer: NodeId(1),
            acceptor: NodeId(2),
            dialer_boot: 7,
            acceptor_boot: 9,
            dialer_nonce: [1; 32],
            acceptor_nonce: [2; 32],
        }
    }

    #[test]
    fn each_side_proves_the_secret_and_nothing_else_passes() {
        let secret = Secret::new(b"0123456789abcdef".to_vec()).expect("long enough");
        let other = Secret::new(b"0123456789abcdeX".to_vec()).expect("long enough");
        let t = transcript();
        let p = prove(&secret, Role::Acceptor, &t);
        assert!(verify(&secret, Role::Acceptor, &t, &p));
        assert!(!verify(&secret, Role::Dialer, &t, &p), "roles differ");
        assert!(!verify(&other, Role::Acceptor, &t, &p), "another secret");
        let replayed = Transcript {
            acceptor_nonce: [3; 32],
            ..t
        };
        assert!(!verify(&secret, Role::Acceptor, &replayed, &p), "new nonce");
        let impostor = Transcript {
            dialer: NodeId(3),
            ..t
        };
        assert!(
            !verify(&secret, Role::Acceptor, &impostor, &p),
            "other node"
        );
        assert!(Secret::new(vec![0; MIN_SECRET - 1]).is_none());
    }
}
