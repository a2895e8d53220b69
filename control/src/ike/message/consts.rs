//! IKEv2 numbers from the IANA registries (RFC 7296 §3 and later RFCs).

use std::fmt;

/// An exchange type (RFC 7296 §3.1): the values are in [`exchange`]; any other value read off
/// the wire is kept as it is (and refused where an exchange must be known).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ExchangeType(pub u8);

impl ExchangeType {
    /// The registry name, or "exchange N" for a value esprit does not know.
    pub fn name(self) -> &'static str {
        match self {
            exchange::IKE_SA_INIT => "IKE_SA_INIT",
            exchange::IKE_AUTH => "IKE_AUTH",
            exchange::CREATE_CHILD_SA => "CREATE_CHILD_SA",
            exchange::INFORMATIONAL => "INFORMATIONAL",
            exchange::IKE_INTERMEDIATE => "IKE_INTERMEDIATE",
            exchange::IKE_FOLLOWUP_KE => "IKE_FOLLOWUP_KE",
            _ => "unknown exchange",
        }
    }
}

impl fmt::Display for ExchangeType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.name() {
            "unknown exchange" => write!(f, "exchange {}", self.0),
            n => f.write_str(n),
        }
    }
}

/// Exchange types.
pub mod exchange {
    use super::ExchangeType;
    /// IKE_SA_INIT.
    pub const IKE_SA_INIT: ExchangeType = ExchangeType(34);
    /// IKE_AUTH.
    pub const IKE_AUTH: ExchangeType = ExchangeType(35);
    /// CREATE_CHILD_SA.
    pub const CREATE_CHILD_SA: ExchangeType = ExchangeType(36);
    /// INFORMATIONAL.
    pub const INFORMATIONAL: ExchangeType = ExchangeType(37);
    /// IKE_INTERMEDIATE (RFC 9242).
    pub const IKE_INTERMEDIATE: ExchangeType = ExchangeType(43);
    /// IKE_FOLLOWUP_KE (RFC 9370 §2.2.4).
    pub const IKE_FOLLOWUP_KE: ExchangeType = ExchangeType(44);
}

/// Payload types.
pub mod payload_type {
    /// No next payload.
    pub const NONE: u8 = 0;
    /// Security Association.
    pub const SA: u8 = 33;
    /// Key Exchange.
    pub const KE: u8 = 34;
    /// Identification - Initiator.
    pub const IDI: u8 = 35;
    /// Identification - Responder.
    pub const IDR: u8 = 36;
    /// Certificate.
    pub const CERT: u8 = 37;
    /// Certificate Request.
    pub const CERTREQ: u8 = 38;
    /// Authentication.
    pub const AUTH: u8 = 39;
    /// Nonce.
    pub const NONCE: u8 = 40;
    /// Notify.
    pub const NOTIFY: u8 = 41;
    /// Delete.
    pub const DELETE: u8 = 42;
    /// Vendor ID.
    pub const VENDOR: u8 = 43;
    /// Traffic Selector - Initiator.
    pub const TSI: u8 = 44;
    /// Traffic Selector - Responder.
    pub const TSR: u8 = 45;
    /// Encrypted and Authenticated.
    pub const SK: u8 = 46;
    /// Configuration.
    pub const CP: u8 = 47;
    /// Extensible Authentication.
    pub const EAP: u8 = 48;
    /// Encrypted and Authenticated Fragment (RFC 7383).
    pub const SKF: u8 = 53;
}

/// Header flags.
pub mod flags {
    /// Set by the original initiator of the IKE SA.
    pub const INITIATOR: u8 = 0x08;
    /// Version: the sender can speak a higher major version.
    pub const VERSION: u8 = 0x10;
    /// Set in responses.
    pub const RESPONSE: u8 = 0x20;
}

/// Security protocol identifiers.
pub mod protocol {
    /// IKE.
    pub const IKE: u8 = 1;
    /// AH.
    pub const AH: u8 = 2;
    /// ESP.
    pub const ESP: u8 = 3;
}

/// Transform types.
pub mod transform_type {
    /// Encryption algorithm.
    pub const ENCR: u8 = 1;
    /// Pseudo-random function.
    pub const PRF: u8 = 2;
    /// Integrity algorithm.
    pub const INTEG: u8 = 3;
    /// Key exchange method (Diffie-Hellman group).
    pub const KE: u8 = 4;
    /// Extended sequence numbers.
    pub const ESN: u8 = 5;
    /// Additional Key Exchange 1 (RFC 9370 §2.2.1); ADDKE2..ADDKE7 follow as 7..12.
    pub const ADDKE1: u8 = 6;
    /// Additional Key Exchange 7, the last.
    pub const ADDKE7: u8 = 12;
    /// How many Additional Key Exchange types there are.
    pub const ADDKE_COUNT: usize = 7;

    /// The transform type of ADDKE `n` (1 to 7).
    pub const fn addke(n: usize) -> u8 {
        ADDKE1 + (n as u8) - 1
    }

    /// Whether `t` is one of the Additional Key Exchange types.
    pub fn is_addke(t: u8) -> bool {
        (ADDKE1..=ADDKE7).contains(&t)
    }
}

/// The Key Length transform attribute (TV format).
pub const ATTR_KEY_LENGTH: u16 = 14;

/// A notify message type (RFC 7296 §3.10.1): the values esprit knows are in [`notify`]; others
/// read off the wire are kept as they are (errors below 16384, status from 16384).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct NotifyType(pub u16);

impl NotifyType {
    /// Whether it reports an error (types below 16384).
    pub fn is_error(self) -> bool {
        self.0 < 16384
    }

    /// The registry name, or "error"/"status" for a value esprit does not know.
    pub fn name(self) -> &'static str {
        notify::name(self)
    }
}

impl fmt::Display for NotifyType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.name() {
            "error" | "status" => write!(f, "{} {}", self.name(), self.0),
            n => f.write_str(n),
        }
    }
}

/// Notify message types: errors below 16384, status from 16384.
pub mod notify {
    use super::NotifyType;
    /// UNSUPPORTED_CRITICAL_PAYLOAD.
    pub const UNSUPPORTED_CRITICAL_PAYLOAD: NotifyType = NotifyType(1);
    /// INVALID_IKE_SPI.
    pub const INVALID_IKE_SPI: NotifyType = NotifyType(4);
    /// INVALID_MAJOR_VERSION.
    pub const INVALID_MAJOR_VERSION: NotifyType = NotifyType(5);
    /// INVALID_SYNTAX.
    pub const INVALID_SYNTAX: NotifyType = NotifyType(7);
    /// INVALID_MESSAGE_ID.
    pub const INVALID_MESSAGE_ID: NotifyType = NotifyType(9);
    /// INVALID_SPI.
    pub const INVALID_SPI: NotifyType = NotifyType(11);
    /// NO_PROPOSAL_CHOSEN.
    pub const NO_PROPOSAL_CHOSEN: NotifyType = NotifyType(14);
    /// INVALID_KE_PAYLOAD.
    pub const INVALID_KE_PAYLOAD: NotifyType = NotifyType(17);
    /// AUTHENTICATION_FAILED.
    pub const AUTHENTICATION_FAILED: NotifyType = NotifyType(24);
    /// SINGLE_PAIR_REQUIRED.
    pub const SINGLE_PAIR_REQUIRED: NotifyType = NotifyType(34);
    /// NO_ADDITIONAL_SAS.
    pub const NO_ADDITIONAL_SAS: NotifyType = NotifyType(35);
    /// INTERNAL_ADDRESS_FAILURE.
    pub const INTERNAL_ADDRESS_FAILURE: NotifyType = NotifyType(36);
    /// FAILED_CP_REQUIRED.
    pub const FAILED_CP_REQUIRED: NotifyType = NotifyType(37);
    /// TS_UNACCEPTABLE.
    pub const TS_UNACCEPTABLE: NotifyType = NotifyType(38);
    /// INVALID_SELECTORS.
    pub const INVALID_SELECTORS: NotifyType = NotifyType(39);
    /// TEMPORARY_FAILURE.
    pub const TEMPORARY_FAILURE: NotifyType = NotifyType(43);
    /// CHILD_SA_NOT_FOUND.
    pub const CHILD_SA_NOT_FOUND: NotifyType = NotifyType(44);
    /// STATE_NOT_FOUND (RFC 9370): an IKE_FOLLOWUP_KE whose link the responder does not know.
    pub const STATE_NOT_FOUND: NotifyType = NotifyType(47);
    /// INITIAL_CONTACT.
    pub const INITIAL_CONTACT: NotifyType = NotifyType(16384);
    /// SET_WINDOW_SIZE.
    pub const SET_WINDOW_SIZE: NotifyType = NotifyType(16385);
    /// ADDITIONAL_TS_POSSIBLE.
    pub const ADDITIONAL_TS_POSSIBLE: NotifyType = NotifyType(16386);
    /// IPCOMP_SUPPORTED.
    pub const IPCOMP_SUPPORTED: NotifyType = NotifyType(16387);
    /// NAT_DETECTION_SOURCE_IP.
    pub const NAT_DETECTION_SOURCE_IP: NotifyType = NotifyType(16388);
    /// NAT_DETECTION_DESTINATION_IP.
    pub const NAT_DETECTION_DESTINATION_IP: NotifyType = NotifyType(16389);
    /// COOKIE.
    pub const COOKIE: NotifyType = NotifyType(16390);
    /// USE_TRANSPORT_MODE.
    pub const USE_TRANSPORT_MODE: NotifyType = NotifyType(16391);
    /// REKEY_SA.
    pub const REKEY_SA: NotifyType = NotifyType(16393);
    /// ESP_TFC_PADDING_NOT_SUPPORTED.
    pub const ESP_TFC_PADDING_NOT_SUPPORTED: NotifyType = NotifyType(16394);
    /// NON_FIRST_FRAGMENTS_ALSO.
    pub const NON_FIRST_FRAGMENTS_ALSO: NotifyType = NotifyType(16395);
    /// MOBIKE_SUPPORTED.
    pub const MOBIKE_SUPPORTED: NotifyType = NotifyType(16396);
    /// MULTIPLE_AUTH_SUPPORTED (RFC 4739).
    pub const MULTIPLE_AUTH_SUPPORTED: NotifyType = NotifyType(16404);
    /// IKEV2_FRAGMENTATION_SUPPORTED (RFC 7383).
    pub const IKEV2_FRAGMENTATION_SUPPORTED: NotifyType = NotifyType(16430);
    /// SIGNATURE_HASH_ALGORITHMS (RFC 7427).
    pub const SIGNATURE_HASH_ALGORITHMS: NotifyType = NotifyType(16431);
    /// INTERMEDIATE_EXCHANGE_SUPPORTED (RFC 9242).
    pub const INTERMEDIATE_EXCHANGE_SUPPORTED: NotifyType = NotifyType(16438);
    /// ADDITIONAL_KEY_EXCHANGE (RFC 9370).
    pub const ADDITIONAL_KEY_EXCHANGE: NotifyType = NotifyType(16441);

    /// The name of a notify type, for logs ("error" or "status" for one esprit does not know).
    pub fn name(t: NotifyType) -> &'static str {
        match t {
            UNSUPPORTED_CRITICAL_PAYLOAD => "UNSUPPORTED_CRITICAL_PAYLOAD",
            INVALID_IKE_SPI => "INVALID_IKE_SPI",
            INVALID_MAJOR_VERSION => "INVALID_MAJOR_VERSION",
            INVALID_SYNTAX => "INVALID_SYNTAX",
            INVALID_MESSAGE_ID => "INVALID_MESSAGE_ID",
            INVALID_SPI => "INVALID_SPI",
            NO_PROPOSAL_CHOSEN => "NO_PROPOSAL_CHOSEN",
            INVALID_KE_PAYLOAD => "INVALID_KE_PAYLOAD",
            AUTHENTICATION_FAILED => "AUTHENTICATION_FAILED",
            SINGLE_PAIR_REQUIRED => "SINGLE_PAIR_REQUIRED",
            NO_ADDITIONAL_SAS => "NO_ADDITIONAL_SAS",
            INTERNAL_ADDRESS_FAILURE => "INTERNAL_ADDRESS_FAILURE",
            FAILED_CP_REQUIRED => "FAILED_CP_REQUIRED",
            TS_UNACCEPTABLE => "TS_UNACCEPTABLE",
            INVALID_SELECTORS => "INVALID_SELECTORS",
            TEMPORARY_FAILURE => "TEMPORARY_FAILURE",
            CHILD_SA_NOT_FOUND => "CHILD_SA_NOT_FOUND",
            STATE_NOT_FOUND => "STATE_NOT_FOUND",
            INITIAL_CONTACT => "INITIAL_CONTACT",
            SET_WINDOW_SIZE => "SET_WINDOW_SIZE",
            ADDITIONAL_TS_POSSIBLE => "ADDITIONAL_TS_POSSIBLE",
            IPCOMP_SUPPORTED => "IPCOMP_SUPPORTED",
            NAT_DETECTION_SOURCE_IP => "NAT_DETECTION_SOURCE_IP",
            NAT_DETECTION_DESTINATION_IP => "NAT_DETECTION_DESTINATION_IP",
            COOKIE => "COOKIE",
            USE_TRANSPORT_MODE => "USE_TRANSPORT_MODE",
            REKEY_SA => "REKEY_SA",
            ESP_TFC_PADDING_NOT_SUPPORTED => "ESP_TFC_PADDING_NOT_SUPPORTED",
            NON_FIRST_FRAGMENTS_ALSO => "NON_FIRST_FRAGMENTS_ALSO",
            MOBIKE_SUPPORTED => "MOBIKE_SUPPORTED",
            MULTIPLE_AUTH_SUPPORTED => "MULTIPLE_AUTH_SUPPORTED",
            IKEV2_FRAGMENTATION_SUPPORTED => "IKEV2_FRAGMENTATION_SUPPORTED",
            SIGNATURE_HASH_ALGORITHMS => "SIGNATURE_HASH_ALGORITHMS",
            INTERMEDIATE_EXCHANGE_SUPPORTED => "INTERMEDIATE_EXCHANGE_SUPPORTED",
            ADDITIONAL_KEY_EXCHANGE => "ADDITIONAL_KEY_EXCHANGE",
            t if t.0 < 16384 => "error",
            _ => "status",
        }
    }
}

/// Traffic selector types.
pub mod ts_type {
    /// TS_IPV4_ADDR_RANGE.
    pub const IPV4_ADDR_RANGE: u8 = 7;
    /// TS_IPV6_ADDR_RANGE.
    pub const IPV6_ADDR_RANGE: u8 = 8;
}

/// Certificate encodings.
pub mod cert_encoding {
    /// X.509 Certificate - Signature.
    pub const X509_SIGNATURE: u8 = 4;
}
