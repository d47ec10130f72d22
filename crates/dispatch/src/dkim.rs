//! DKIM keys and signing (RFC 6376; Ed25519 per RFC 8463), done by `mail-auth` over the bytes
//! that go on the wire, so the signature covers exactly the headers it lists in `h=`.

use std::fmt;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use mail_auth::common::crypto::{Ed25519Key, RsaKey, Sha256};
use mail_auth::common::headers::HeaderWriter as _;
use mail_auth::dkim::{Canonicalization, DkimSigner, Done};
use rsa::pkcs1::{DecodeRsaPrivateKey as _, EncodeRsaPrivateKey as _};
use rsa::pkcs8::{DecodePrivateKey as _, EncodePublicKey as _, LineEnding};
use rsa::traits::PublicKeyParts as _;
use rustls_pki_types::{PrivateKeyDer, PrivatePkcs1KeyDer};
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};

/// Headers covered by every signature when the message has them. RFC 8058 requires
/// List-Unsubscribe and List-Unsubscribe-Post to be signed for one-click unsubscribe to be
/// honoured.
const SIGNED_HEADERS: &[&str] = &[
    "From",
    "To",
    "Subject",
    "Date",
    "Message-ID",
    "Reply-To",
    "MIME-Version",
    "Content-Type",
    "Content-Transfer-Encoding",
    "List-Unsubscribe",
    "List-Unsubscribe-Post",
];

/// Smallest RSA modulus accepted: RFC 8301 forbids signing with less than 1024 bits.
const MIN_RSA_BITS: usize = 1024;

/// Size of the RSA keys Clarion generates.
const GENERATED_RSA_BITS: usize = 2048;

/// The DKIM signing algorithm.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum DkimAlgorithm {
    /// rsa-sha256; the private key is a PEM, PKCS#1 (`-----BEGIN RSA PRIVATE KEY-----`) or
    /// PKCS#8 (`-----BEGIN PRIVATE KEY-----`), of at least 1024 bits.
    #[default]
    Rsa,
    /// ed25519-sha256 (RFC 8463); the private key is the base64 of the 32-byte seed.
    Ed25519,
}

impl DkimAlgorithm {
    /// The name used in configuration and the API: `rsa` or `ed25519`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Rsa => "rsa",
            Self::Ed25519 => "ed25519",
        }
    }

    /// The `k=` tag of the DNS record.
    fn key_type(self) -> &'static str {
        self.as_str()
    }
}

/// Why a private key cannot be used. The message never contains the key.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct InvalidDkimKey(String);

enum Signer {
    Rsa(DkimSigner<RsaKey<Sha256>, Done>),
    Ed25519(DkimSigner<Ed25519Key, Done>),
}

/// A DKIM signing key with the domain (`d=`) and selector (`s=`) it signs for.
///
/// Built once from a private key ([`DkimKey::parse`]) or made anew ([`DkimKey::generate`]),
/// then shared (`Arc`) by every message it signs. `Debug` never shows the private key.
pub struct DkimKey {
    selector: String,
    domain: String,
    algorithm: DkimAlgorithm,
    /// The public key as published in `p=`: SubjectPublicKeyInfo DER for RSA, the raw 32
    /// bytes for Ed25519.
    public_key: Vec<u8>,
    private_key: SecretString,
    signer: Signer,
}

impl DkimKey {
    /// Reads `private_key` in the form `algorithm` names (see [`DkimAlgorithm`]).
    pub fn parse(
        selector: &str,
        domain: &str,
        algorithm: DkimAlgorithm,
        private_key: &SecretString,
    ) -> Result<Self, InvalidDkimKey> {
        let text = private_key.expose_secret().trim();
        match algorithm {
            DkimAlgorithm::Rsa => {
                let key = rsa::RsaPrivateKey::from_pkcs1_pem(text)
                    .or_else(|_| rsa::RsaPrivateKey::from_pkcs8_pem(text))
                    .map_err(|_| {
                        InvalidDkimKey(
                            "not an RSA private key in PEM form (PKCS#1 \"BEGIN RSA PRIVATE KEY\" or PKCS#8 \"BEGIN PRIVATE KEY\")"
                                .to_owned(),
                        )
                    })?;
                Self::from_rsa(selector, domain, key)
            }
            DkimAlgorithm::Ed25519 => {
                let seed: [u8; 32] = BASE64
                    .decode(text)
                    .ok()
                    .and_then(|bytes| bytes.try_into().ok())
                    .ok_or_else(|| {
                        InvalidDkimKey(
                            "not an Ed25519 private key: expected the base64 of a 32-byte seed"
                                .to_owned(),
                        )
                    })?;
                Self::from_ed25519_seed(selector, domain, seed)
            }
        }
    }

    /// Makes a new key: RSA of 2048 bits or Ed25519.
    pub fn generate(
        selector: &str,
        domain: &str,
        algorithm: DkimAlgorithm,
    ) -> Result<Self, InvalidDkimKey> {
        match algorithm {
            DkimAlgorithm::Rsa => {
                let pair = mail_auth::dkim::generate::DkimKeyPair::generate_rsa(GENERATED_RSA_BITS)
                    .map_err(|error| {
                        InvalidDkimKey(format!("RSA key generation failed: {error}"))
                    })?;
                let key =
                    rsa::RsaPrivateKey::from_pkcs1_der(pair.private_key()).map_err(|error| {
                        InvalidDkimKey(format!("RSA key generation failed: {error}"))
                    })?;
                Self::from_rsa(selector, domain, key)
            }
            DkimAlgorithm::Ed25519 => {
                let mut seed = [0u8; 32];
                rand::RngCore::fill_bytes(&mut rand::rng(), &mut seed);
                Self::from_ed25519_seed(selector, domain, seed)
            }
        }
    }

    fn from_rsa(
        selector: &str,
        domain: &str,
        key: rsa::RsaPrivateKey,
    ) -> Result<Self, InvalidDkimKey> {
        let bits = key.n().bits();
        if bits < MIN_RSA_BITS {
            return Err(InvalidDkimKey(format!(
                "the RSA key has {bits} bits; DKIM needs at least {MIN_RSA_BITS} (2048 recommended)"
            )));
        }
        let invalid =
            |error: &dyn fmt::Display| InvalidDkimKey(format!("unusable RSA key: {error}"));
        let public_key = key
            .to_public_key()
            .to_public_key_der()
            .map_err(|error| invalid(&error))?
            .into_vec();
        let pkcs1 = key.to_pkcs1_der().map_err(|error| invalid(&error))?;
        let pem = key
            .to_pkcs1_pem(LineEnding::LF)
            .map_err(|error| invalid(&error))?;
        let signing = RsaKey::<Sha256>::from_key_der(PrivateKeyDer::Pkcs1(
            PrivatePkcs1KeyDer::from(pkcs1.as_bytes().to_vec()),
        ))
        .map_err(|error| invalid(&error))?;
        Ok(Self {
            selector: selector.to_owned(),
            domain: domain.to_owned(),
            algorithm: DkimAlgorithm::Rsa,
            public_key,
            private_key: SecretString::from(pem.as_str().to_owned()),
            signer: Signer::Rsa(signer(signing, domain, selector)),
        })
    }

    fn from_ed25519_seed(
        selector: &str,
        domain: &str,
        seed: [u8; 32],
    ) -> Result<Self, InvalidDkimKey> {
        let public_key = ed25519_dalek::SigningKey::from_bytes(&seed)
            .verifying_key()
            .to_bytes()
            .to_vec();
        let signing = Ed25519Key::from_seed_and_public_key(&seed, &public_key)
            .map_err(|error| InvalidDkimKey(format!("unusable Ed25519 key: {error}")))?;
        Ok(Self {
            selector: selector.to_owned(),
            domain: domain.to_owned(),
            algorithm: DkimAlgorithm::Ed25519,
            public_key,
            private_key: SecretString::from(BASE64.encode(seed)),
            signer: Signer::Ed25519(signer(signing, domain, selector)),
        })
    }

    /// The selector (`s=`).
    pub fn selector(&self) -> &str {
        &self.selector
    }

    /// The signing domain (`d=`).
    pub fn domain(&self) -> &str {
        &self.domain
    }

    /// The algorithm of the key.
    pub fn algorithm(&self) -> DkimAlgorithm {
        self.algorithm
    }

    /// The private key in the form [`DkimKey::parse`] reads (PKCS#1 PEM for RSA, the base64
    /// seed for Ed25519), for storing it. Never log it.
    pub fn private_key(&self) -> &SecretString {
        &self.private_key
    }

    /// The name of the DNS TXT record to publish: `<selector>._domainkey.<domain>`.
    pub fn dns_name(&self) -> String {
        format!("{}._domainkey.{}", self.selector, self.domain)
    }

    /// The value of the DNS TXT record: `v=DKIM1; k=rsa; p=<base64 public key>`.
    pub fn dns_value(&self) -> String {
        format!(
            "v=DKIM1; k={}; p={}",
            self.algorithm.key_type(),
            BASE64.encode(&self.public_key)
        )
    }

    /// Signs `message` (RFC 5322 bytes with CRLF line ends, exactly as they will be sent)
    /// and returns the `DKIM-Signature` header line to put in front of it, CRLF included.
    pub fn sign(&self, message: &[u8]) -> Result<String, String> {
        let signature = match &self.signer {
            Signer::Rsa(signer) => signer.sign(message),
            Signer::Ed25519(signer) => signer.sign(message),
        }
        .map_err(|error| format!("DKIM signing failed: {error}"))?;
        Ok(signature.to_header())
    }
}

fn signer<T: mail_auth::common::crypto::SigningKey>(
    key: T,
    domain: &str,
    selector: &str,
) -> DkimSigner<T, Done> {
    DkimSigner::from_key(key)
        .domain(domain)
        .selector(selector)
        .headers(SIGNED_HEADERS.iter().copied())
        // relaxed/relaxed survives the header refolding and whitespace changes relays make.
        .header_canonicalization(Canonicalization::Relaxed)
        .body_canonicalization(Canonicalization::Relaxed)
}

impl fmt::Debug for DkimKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DkimKey")
            .field("selector", &self.selector)
            .field("domain", &self.domain)
            .field("algorithm", &self.algorithm)
            .finish_non_exhaustive()
    }
}

/// Two keys are the same when they sign for the same name with the same public key.
impl PartialEq for DkimKey {
    fn eq(&self, other: &Self) -> bool {
        self.selector == other.selector
            && self.domain == other.domain
            && self.algorithm == other.algorithm
            && self.public_key == other.public_key
    }
}

impl Eq for DkimKey {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_read_back_from_their_stored_form_with_the_same_record() {
        for algorithm in [DkimAlgorithm::Rsa, DkimAlgorithm::Ed25519] {
            let made = DkimKey::generate("s1", "shop.example", algorithm).unwrap();
            let read = DkimKey::parse("s1", "shop.example", algorithm, made.private_key()).unwrap();
            assert_eq!(read, made);
            assert_eq!(read.dns_name(), "s1._domainkey.shop.example");
            assert!(
                read.dns_value()
                    .starts_with(&format!("v=DKIM1; k={}; p=", algorithm.as_str())),
                "{}",
                read.dns_value()
            );
        }
    }

    #[test]
    fn pkcs8_rsa_keys_are_taken_and_bad_keys_are_refused_without_echoing_them() {
        let made = DkimKey::generate("s1", "shop.example", DkimAlgorithm::Rsa).unwrap();
        let rsa = rsa::RsaPrivateKey::from_pkcs1_pem(made.private_key().expose_secret()).unwrap();
        let pkcs8 = rsa::pkcs8::EncodePrivateKey::to_pkcs8_pem(&rsa, LineEnding::LF).unwrap();
        let read = DkimKey::parse(
            "s1",
            "shop.example",
            DkimAlgorithm::Rsa,
            &SecretString::from(pkcs8.as_str().to_owned()),
        )
        .unwrap();
        assert_eq!(read, made);

        let secret = "c2VjcmV0LXNlZWQtdGhhdC1pcy10b28tc2hvcnQ=";
        for algorithm in [DkimAlgorithm::Rsa, DkimAlgorithm::Ed25519] {
            let error = DkimKey::parse(
                "s1",
                "shop.example",
                algorithm,
                &SecretString::from(secret.to_owned()),
            )
            .unwrap_err();
            assert!(!error.to_string().contains(secret), "{error}");
        }
        assert!(!format!("{made:?}").contains(made.private_key().expose_secret()));
    }
}
