//! Proposal strings as strongSwan writes them: algorithm keywords joined by `-`, such as
//! `aes128gcm16-prfsha256-x25519`, `aes256-sha256-modp2048` (IKE) or `aes256gcm16-x25519-esn`,
//! `aes256-sha512` (ESP).
//!
//! As in strongSwan, `sha256`, `sha384` and `sha512` name the integrity algorithm of AES-CBC
//! (HMAC-SHA2-256-128, -384-192, -512-256) and, in an IKE proposal without a `prf…` keyword,
//! the PRF too; next to an AEAD alone they name only the PRF.
//!
//! `ke1_mlkem768` (and `ke2_…` to `ke7_…`, `keN_none`) name an additional key exchange of RFC
//! 9370 in an IKE proposal: ML-KEM-512/768/1024 after the classical one, in IKE_INTERMEDIATE.

use crate::ike::algorithms::{esp_suite_name, DhGroup, EncrAlg, IntegAlg, PrfAlg};
use crate::ike::crypto::mlkem::{AddKeSlots, MlKem};
use std::fmt;
use std::str::FromStr;

/// Encryption keywords and their strongSwan aliases.
const ENCR: &[(&str, EncrAlg)] = &[
    ("aes128gcm16", EncrAlg::AesGcm16_128),
    ("aes128gcm128", EncrAlg::AesGcm16_128),
    ("aes128gcm", EncrAlg::AesGcm16_128),
    ("aes256gcm16", EncrAlg::AesGcm16_256),
    ("aes256gcm128", EncrAlg::AesGcm16_256),
    ("aes256gcm", EncrAlg::AesGcm16_256),
    ("aes128", EncrAlg::AesCbc128),
    ("aes128cbc", EncrAlg::AesCbc128),
    ("aes", EncrAlg::AesCbc128),
    ("aes256", EncrAlg::AesCbc256),
    ("aes256cbc", EncrAlg::AesCbc256),
    ("chacha20poly1305", EncrAlg::ChaCha20Poly1305),
];

/// Integrity keywords (HMAC-SHA2 truncated to half the hash, RFC 4868).
const INTEG: &[(&str, IntegAlg)] = &[
    ("sha256", IntegAlg::HmacSha256_128),
    ("sha2_256", IntegAlg::HmacSha256_128),
    ("sha384", IntegAlg::HmacSha384_192),
    ("sha2_384", IntegAlg::HmacSha384_192),
    ("sha512", IntegAlg::HmacSha512_256),
    ("sha2_512", IntegAlg::HmacSha512_256),
];

/// PRF keywords.
const PRF: &[(&str, PrfAlg)] = &[
    ("prfsha256", PrfAlg::HmacSha256),
    ("prfsha384", PrfAlg::HmacSha384),
    ("prfsha512", PrfAlg::HmacSha512),
];

/// Integrity keywords that, in an IKE proposal without a `prf…` keyword, name the PRF too (as in
/// strongSwan); next to an AEAD alone they name only the PRF.
const INTEG_AS_PRF: &[(&str, PrfAlg)] = &[
    ("sha256", PrfAlg::HmacSha256),
    ("sha2_256", PrfAlg::HmacSha256),
    ("sha384", PrfAlg::HmacSha384),
    ("sha2_384", PrfAlg::HmacSha384),
    ("sha512", PrfAlg::HmacSha512),
    ("sha2_512", PrfAlg::HmacSha512),
];

/// Key exchange keywords and aliases.
const KE: &[(&str, DhGroup)] = &[
    ("x25519", DhGroup::X25519),
    ("curve25519", DhGroup::X25519),
    ("ecp256", DhGroup::Ecp256),
    ("ecp384", DhGroup::Ecp384),
    ("ecp521", DhGroup::Ecp521),
    ("modp2048", DhGroup::Modp2048),
    ("modp3072", DhGroup::Modp3072),
    ("modp4096", DhGroup::Modp4096),
];

/// Key exchange methods strongSwan knows that esprit does not implement.
const UNSUPPORTED_KE: &[&str] = &[
    "modp768",
    "modp1024",
    "modp1536",
    "modp6144",
    "modp8192",
    "modp1024s160",
    "modp2048s224",
    "modp2048s256",
    "ecp192",
    "ecp224",
    "ecp224bp",
    "ecp256bp",
    "ecp384bp",
    "ecp512bp",
    "curve448",
    "x448",
    "mlkem512",
    "mlkem768",
    "mlkem1024",
];

const ENCR_LIST: &str = "aes128gcm16, aes256gcm16, aes128, aes256, chacha20poly1305";
const INTEG_LIST: &str = "sha256, sha384, sha512";
const PRF_LIST: &str = "prfsha256, prfsha384, prfsha512";
const KE_LIST: &str = "x25519, ecp256, ecp384, ecp521, modp2048, modp3072, modp4096";
const ADDKE_LIST: &str = "ke1_mlkem512, ke1_mlkem768, ke1_mlkem1024, ke1_none (ke2_ to ke7_ alike)";

/// One algorithm esprit implements, as `espctl ike list-algs` shows it: its transform type,
/// its name, its IANA transform ID, the proposal keywords that select it (aliases included)
/// and where it may appear.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AlgorithmKeywords {
    /// "encryption", "integrity", "prf", "key-exchange" or "esn".
    pub kind: &'static str,
    /// The canonical keyword.
    pub name: &'static str,
    /// The IANA transform ID (ESN: 0 no, 1 yes).
    pub iana_id: u16,
    /// Every keyword a proposal may use for it.
    pub keywords: Vec<&'static str>,
    /// Allowed in IKE proposals.
    pub ike: bool,
    /// Allowed in ESP proposals.
    pub esp: bool,
}

/// Every algorithm of the proposal keyword tables, grouped by algorithm (the parser's own
/// tables: what this lists is exactly what a proposal accepts).
pub fn proposal_keywords() -> Vec<AlgorithmKeywords> {
    fn group<A: Copy + PartialEq>(
        table: &[(&'static str, A)],
        extra: &[(&'static str, A)],
        kind: &'static str,
        name: impl Fn(A) -> &'static str,
        id: impl Fn(A) -> u16,
        (ike, esp): (bool, bool),
    ) -> Vec<AlgorithmKeywords> {
        let mut out: Vec<(A, AlgorithmKeywords)> = Vec::new();
        for &(kw, a) in table.iter().chain(extra) {
            match out.iter_mut().find(|(x, _)| *x == a) {
                Some((_, k)) => k.keywords.push(kw),
                None => out.push((
                    a,
                    AlgorithmKeywords {
                        kind,
                        name: name(a),
                        iana_id: id(a),
                        keywords: vec![kw],
                        ike,
                        esp,
                    },
                )),
            }
        }
        out.into_iter().map(|(_, k)| k).collect()
    }
    let mut v = group(
        ENCR,
        &[],
        "encryption",
        EncrAlg::name,
        EncrAlg::transform_id,
        (true, true),
    );
    v.extend(group(
        INTEG,
        &[],
        "integrity",
        IntegAlg::name,
        IntegAlg::transform_id,
        (true, true),
    ));
    v.extend(group(
        PRF,
        INTEG_AS_PRF,
        "prf",
        PrfAlg::name,
        PrfAlg::transform_id,
        (true, false),
    ));
    v.extend(group(
        KE,
        &[],
        "key-exchange",
        DhGroup::name,
        DhGroup::transform_id,
        (true, true),
    ));
    for m in MlKem::ALL {
        v.push(AlgorithmKeywords {
            kind: "additional-key-exchange",
            name: m.name(),
            iana_id: m.transform_id(),
            keywords: ADDKE_KEYWORDS
                .iter()
                .filter(|(_, x)| *x == Some(m))
                .map(|(k, _)| *k)
                .collect(),
            ike: true,
            esp: true,
        });
    }
    for (name, id) in [("noesn", 0), ("esn", 1)] {
        v.push(AlgorithmKeywords {
            kind: "esn",
            name,
            iana_id: id,
            keywords: vec![name],
            ike: false,
            esp: true,
        });
    }
    v
}

/// Every `keN_method` keyword (N 1 to 7): the method, None for `keN_none`.
const ADDKE_KEYWORDS: &[(&str, Option<MlKem>)] = &{
    const NAMES: [[&str; 4]; 7] = [
        ["ke1_mlkem512", "ke1_mlkem768", "ke1_mlkem1024", "ke1_none"],
        ["ke2_mlkem512", "ke2_mlkem768", "ke2_mlkem1024", "ke2_none"],
        ["ke3_mlkem512", "ke3_mlkem768", "ke3_mlkem1024", "ke3_none"],
        ["ke4_mlkem512", "ke4_mlkem768", "ke4_mlkem1024", "ke4_none"],
        ["ke5_mlkem512", "ke5_mlkem768", "ke5_mlkem1024", "ke5_none"],
        ["ke6_mlkem512", "ke6_mlkem768", "ke6_mlkem1024", "ke6_none"],
        ["ke7_mlkem512", "ke7_mlkem768", "ke7_mlkem1024", "ke7_none"],
    ];
    const M: [Option<MlKem>; 4] = [
        Some(MlKem::MlKem512),
        Some(MlKem::MlKem768),
        Some(MlKem::MlKem1024),
        None,
    ];
    let mut out = [("", None); 28];
    let mut i = 0;
    while i < 28 {
        out[i] = (NAMES[i / 4][i % 4], M[i % 4]);
        i += 1;
    }
    out
};

/// An additional key exchange keyword: its ADDKE number (1 to 7) and method (None: NONE).
fn addke_keyword(w: &str) -> Option<(usize, Option<MlKem>)> {
    let rest = w.strip_prefix("ke")?;
    let (n, method) = rest.split_once('_')?;
    let n: usize = n.parse().ok().filter(|n| (1..=7).contains(n))?;
    let m = match method {
        "none" => None,
        other => Some(MlKem::from_name(other)?),
    };
    Some((n, m))
}

/// One IKE proposal: every combination of its algorithms is acceptable.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct IkeProposal {
    /// Encryption algorithms, in order of preference; never empty.
    pub encr: Vec<EncrAlg>,
    /// Integrity algorithms of the AES-CBC ciphers, in order of preference; empty when every
    /// cipher is an AEAD, never empty otherwise.
    pub integ: Vec<IntegAlg>,
    /// Pseudo-random functions, in order of preference; never empty.
    pub prf: Vec<PrfAlg>,
    /// Key exchange methods, in order of preference; never empty.
    pub dh: Vec<DhGroup>,
    /// Additional key exchanges (RFC 9370), ADDKE1 to ADDKE7 (`ke1_mlkem768`): empty lists
    /// unless written.
    pub addke: AddKeSlots,
}

/// One ESP proposal: every combination of its algorithms is acceptable.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct EspProposal {
    /// Encryption algorithms, in order of preference; never empty.
    pub encr: Vec<EncrAlg>,
    /// Integrity algorithms of the AES-CBC ciphers, in order of preference; empty when every
    /// cipher is an AEAD, never empty otherwise.
    pub integ: Vec<IntegAlg>,
    /// Key exchange methods for PFS, in order of preference; empty: no PFS.
    pub dh: Vec<DhGroup>,
    /// Additional key exchanges after the PFS group (RFC 9370, in IKE_FOLLOWUP_KE), ADDKE1 to
    /// ADDKE7: empty lists unless written.
    pub addke: AddKeSlots,
    /// Extended sequence numbers offered, in order of preference; never empty (`[false]` unless
    /// `esn` is written).
    pub esn: Vec<bool>,
}

/// Which kind of proposal a keyword is read for.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Ike,
    Esp,
}

/// What a keyword means.
enum Keyword {
    Encr(EncrAlg),
    Integ(IntegAlg),
    Prf(PrfAlg),
    Ke(DhGroup),
    AddKe(usize, Option<MlKem>),
    Esn(bool),
}

fn lookup<T: Copy>(table: &[(&str, T)], word: &str) -> Option<T> {
    table.iter().find(|(n, _)| *n == word).map(|(_, v)| *v)
}

fn keyword(word: &str, kind: Kind) -> Result<Keyword, String> {
    let lower = word.to_ascii_lowercase();
    let w = lower.as_str();
    if let Some(e) = lookup(ENCR, w) {
        return Ok(Keyword::Encr(e));
    }
    if let Some(g) = lookup(KE, w) {
        return Ok(Keyword::Ke(g));
    }
    if let Some(i) = lookup(INTEG, w) {
        return Ok(Keyword::Integ(i));
    }
    if let Some((n, m)) = addke_keyword(w) {
        return match kind {
            Kind::Ike => Ok(Keyword::AddKe(n, m)),
            Kind::Esp => Ok(Keyword::AddKe(n, m)),
        };
    }
    if kind == Kind::Ike {
        if let Some(p) = lookup(PRF, w) {
            return Ok(Keyword::Prf(p));
        }
    }
    match (w, kind) {
        ("esn", Kind::Esp) => return Ok(Keyword::Esn(true)),
        ("noesn", Kind::Esp) => return Ok(Keyword::Esn(false)),
        ("esn" | "noesn", Kind::Ike) => {
            return Err(format!(
                "'{word}' applies only to ESP proposals (esp_proposals)"
            ))
        }
        ("default", _) => {
            return Err("'default' must stand alone, as a proposal of its own".into());
        }
        _ => {}
    }
    Err(unknown(word, w, kind))
}

/// The message for a keyword esprit does not accept, saying what it is taken for.
fn unknown(word: &str, w: &str, kind: Kind) -> String {
    if w.starts_with("prf") {
        return match kind {
            Kind::Ike => format!("unsupported PRF '{word}' (expected one of {PRF_LIST})"),
            Kind::Esp => format!(
                "ESP proposals have no PRF: '{word}' belongs in an IKE proposal (proposals)"
            ),
        };
    }
    if w.len() > 3
        && w.starts_with("ke")
        && w.as_bytes().get(2).is_some_and(u8::is_ascii_digit)
        && w.contains('_')
    {
        return format!(
            "unsupported additional key exchange '{word}' (expected one of {ADDKE_LIST})"
        );
    }
    if w.starts_with("mlkem") && kind == Kind::Ike {
        return format!(
            "'{word}' is supported only as an additional key exchange after a classical one \
             (write ke1_{w} beside one of {KE_LIST})"
        );
    }
    if UNSUPPORTED_KE.contains(&w) {
        return format!("unsupported key exchange '{word}' (expected one of {KE_LIST})");
    }
    if ["modp", "ecp", "curve", "x448", "mlkem", "ntru", "newhope"]
        .iter()
        .any(|p| w.starts_with(p))
    {
        return format!("unknown key exchange '{word}' (expected one of {KE_LIST})");
    }
    if ["md5", "sha", "aesxcbc", "aescmac", "camelliaxcbc"]
        .iter()
        .any(|p| w.starts_with(p))
    {
        return format!(
            "unsupported integrity algorithm '{word}' (expected one of {INTEG_LIST}, for \
             AES-CBC; the AEADs need none)"
        );
    }
    if w.starts_with("aes") && (w.contains("gcm") || w.contains("gmac")) {
        return format!(
            "unsupported encryption algorithm '{word}': esprit supports AES-GCM only with a \
             16-octet ICV and a 128- or 256-bit key (expected one of {ENCR_LIST})"
        );
    }
    if [
        "aes", "3des", "des", "cast", "blowfish", "camellia", "twofish", "serpent", "chacha",
        "null", "idea", "rc5", "sm4",
    ]
    .iter()
    .any(|p| w.starts_with(p))
    {
        return format!("unsupported encryption algorithm '{word}' (expected one of {ENCR_LIST})");
    }
    match kind {
        Kind::Ike => format!(
            "unknown algorithm '{word}' (expected encryption {ENCR_LIST}; integrity \
             {INTEG_LIST}; PRF {PRF_LIST}; key exchange {KE_LIST})"
        ),
        Kind::Esp => format!(
            "unknown algorithm '{word}' (expected encryption {ENCR_LIST}; integrity \
             {INTEG_LIST} with AES-CBC; optional key exchange {KE_LIST}; esn or noesn)"
        ),
    }
}

fn push_unique<T: PartialEq>(v: &mut Vec<T>, x: T) {
    if !v.contains(&x) {
        v.push(x);
    }
}

/// The keywords of a proposal string.
fn words(s: &str) -> Result<Vec<&str>, String> {
    let t = s.trim();
    if t.is_empty() {
        return Err("empty proposal".into());
    }
    let words: Vec<&str> = t.split('-').map(str::trim).collect();
    if words.iter().any(|w| w.is_empty()) {
        return Err(format!("empty algorithm name in '{t}'"));
    }
    Ok(words)
}

/// The AES-CBC ciphers of a proposal, by name, for messages.
fn cbc_names(encr: &[EncrAlg]) -> String {
    encr.iter()
        .filter(|e| !e.is_aead())
        .map(|e| e.name())
        .collect::<Vec<_>>()
        .join(", ")
}

impl IkeProposal {
    /// esprit's default IKE proposal (what `default` stands for): AES-GCM-16 with 128- or 256-bit
    /// keys, any of the three PRFs, and x25519, ECP-256, ECP-384 or MODP-2048.
    pub fn defaults() -> Self {
        IkeProposal {
            encr: vec![EncrAlg::AesGcm16_128, EncrAlg::AesGcm16_256],
            integ: Vec::new(),
            prf: vec![PrfAlg::HmacSha256, PrfAlg::HmacSha384, PrfAlg::HmacSha512],
            dh: vec![
                DhGroup::X25519,
                DhGroup::Ecp256,
                DhGroup::Ecp384,
                DhGroup::Modp2048,
            ],
            addke: AddKeSlots::default(),
        }
    }

    /// Parses one proposal string (`aes128gcm16-prfsha256-x25519`, `aes256-sha256-modp2048`,
    /// or `default`). `sha256`, `sha384` and `sha512` are the integrity algorithms of AES-CBC
    /// and, when no `prf…` keyword is written, the PRFs too; with AEADs alone they name only
    /// the PRF (as strongSwan reads them).
    pub fn parse(s: &str) -> Result<Self, String> {
        if s.trim().eq_ignore_ascii_case("default") {
            return Ok(Self::defaults());
        }
        let mut p = IkeProposal {
            encr: Vec::new(),
            integ: Vec::new(),
            prf: Vec::new(),
            dh: Vec::new(),
            addke: AddKeSlots::default(),
        };
        // The PRFs as read next to AEADs alone: `prf…` and integrity keywords alike, in order.
        let mut aead_prf = Vec::new();
        for w in words(s)? {
            match keyword(w, Kind::Ike)? {
                Keyword::Encr(e) => push_unique(&mut p.encr, e),
                Keyword::Integ(i) => {
                    push_unique(&mut p.integ, i);
                    push_unique(&mut aead_prf, i.prf());
                }
                Keyword::Prf(f) => {
                    push_unique(&mut p.prf, f);
                    push_unique(&mut aead_prf, f);
                }
                Keyword::Ke(g) => push_unique(&mut p.dh, g),
                Keyword::AddKe(n, m) => push_unique(&mut p.addke[n - 1], m),
                Keyword::Esn(_) => return Err(format!("'{w}' applies only to ESP proposals")),
            }
        }
        let t = s.trim();
        if p.encr.is_empty() {
            return Err(format!(
                "IKE proposal '{t}' has no encryption algorithm (add one of {ENCR_LIST})"
            ));
        }
        if p.encr.iter().all(|e| e.is_aead()) {
            p.integ.clear();
            p.prf = aead_prf;
        } else if p.prf.is_empty() {
            p.prf = aead_prf;
        }
        if p.integ.is_empty() && !p.encr.iter().all(|e| e.is_aead()) {
            return Err(format!(
                "IKE proposal '{t}' has AES-CBC ({}) but no integrity algorithm (add one of \
                 {INTEG_LIST})",
                cbc_names(&p.encr)
            ));
        }
        if p.prf.is_empty() {
            return Err(format!(
                "IKE proposal '{t}' has no PRF (add one of {PRF_LIST})"
            ));
        }
        if p.dh.is_empty() {
            return Err(format!(
                "IKE proposal '{t}' has no key exchange method (add one of {KE_LIST})"
            ));
        }
        Ok(p)
    }
}

impl EspProposal {
    /// esprit's default ESP proposal (what `default` stands for): AES-GCM-16 with 128- or
    /// 256-bit keys, no PFS, no ESN.
    pub fn defaults() -> Self {
        EspProposal {
            encr: vec![EncrAlg::AesGcm16_128, EncrAlg::AesGcm16_256],
            integ: Vec::new(),
            dh: Vec::new(),
            addke: AddKeSlots::default(),
            esn: vec![false],
        }
    }

    /// Parses one proposal string (`aes128gcm16`, `aes256gcm16-x25519-esn`, `aes256-sha512`,
    /// `chacha20poly1305`, or `default`). AES-CBC needs an integrity algorithm the dataplane
    /// pairs it with (`aes128` with `sha256`; `aes256` with `sha256`, `sha384` or `sha512`); the
    /// AEADs take none. A key exchange method asks for PFS; `esn` and `noesn` in the order
    /// written give the ESN choices (`noesn` when neither is written).
    pub fn parse(s: &str) -> Result<Self, String> {
        if s.trim().eq_ignore_ascii_case("default") {
            return Ok(Self::defaults());
        }
        let mut p = EspProposal {
            encr: Vec::new(),
            integ: Vec::new(),
            dh: Vec::new(),
            addke: AddKeSlots::default(),
            esn: Vec::new(),
        };
        for w in words(s)? {
            match keyword(w, Kind::Esp)? {
                Keyword::Encr(e) => push_unique(&mut p.encr, e),
                Keyword::Integ(i) => push_unique(&mut p.integ, i),
                Keyword::Ke(g) => push_unique(&mut p.dh, g),
                Keyword::Esn(b) => push_unique(&mut p.esn, b),
                Keyword::AddKe(n, m) => push_unique(&mut p.addke[n - 1], m),
                Keyword::Prf(_) => {
                    return Err(format!("ESP proposals have no PRF: '{w}'"));
                }
            }
        }
        let t = s.trim();
        if p.encr.is_empty() {
            return Err(format!(
                "ESP proposal '{t}' has no encryption algorithm (add one of {ENCR_LIST})"
            ));
        }
        if p.encr.iter().all(|e| e.is_aead()) {
            if !p.integ.is_empty() {
                return Err(format!(
                    "ESP proposal '{t}' names an integrity algorithm but only AEAD ciphers, \
                     which need none (integrity goes with aes128 or aes256)"
                ));
            }
        } else if p.integ.is_empty() {
            return Err(format!(
                "ESP proposal '{t}' has AES-CBC ({}) but no integrity algorithm (add one of \
                 {INTEG_LIST})",
                cbc_names(&p.encr)
            ));
        }
        for e in p.encr.iter().filter(|e| !e.is_aead()) {
            if !p
                .integ
                .iter()
                .any(|i| esp_suite_name(*e, Some(*i)).is_some())
            {
                return Err(format!(
                    "ESP proposal '{t}': the dataplane pairs {e} only with {}",
                    INTEG
                        .iter()
                        .filter(|(n, i)| !n.contains('_') && esp_suite_name(*e, Some(*i)).is_some())
                        .map(|(n, _)| *n)
                        .collect::<Vec<_>>()
                        .join(", ")
                ));
            }
        }
        if p.esn.is_empty() {
            p.esn.push(false);
        }
        if p.dh.is_empty() && p.addke.iter().any(|s| !s.is_empty()) {
            return Err(format!(
                "ESP proposal '{t}' has an additional key exchange but no key exchange method \
                 (PFS) before it (add one of {KE_LIST})"
            ));
        }
        Ok(p)
    }
}

impl FromStr for IkeProposal {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Self::parse(s)
    }
}

impl FromStr for EspProposal {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Self::parse(s)
    }
}

/// Writes names joined by `-`.
fn join(f: &mut fmt::Formatter<'_>, names: impl Iterator<Item = &'static str>) -> fmt::Result {
    for (i, n) in names.enumerate() {
        if i > 0 {
            f.write_str("-")?;
        }
        f.write_str(n)?;
    }
    Ok(())
}

/// strongSwan's syntax: `aes128gcm16-prfsha256-x25519`, `aes256-sha256-prfsha256-modp2048`.
impl fmt::Display for IkeProposal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        join(
            f,
            self.encr
                .iter()
                .map(|e| e.name())
                .chain(self.integ.iter().map(|i| i.name()))
                .chain(self.prf.iter().map(|p| p.name()))
                .chain(self.dh.iter().map(|g| g.name()))
                .chain(addke_words(&self.addke)),
        )
    }
}

/// The `keN_method` keywords of additional key exchanges, ADDKE1 first.
fn addke_words(addke: &AddKeSlots) -> impl Iterator<Item = &'static str> + '_ {
    addke.iter().enumerate().flat_map(|(i, slot)| {
        slot.iter().filter_map(move |m| {
            ADDKE_KEYWORDS
                .iter()
                .find(|(k, x)| x == m && k.starts_with(&format!("ke{}_", i + 1)))
                .map(|(k, _)| *k)
        })
    })
}

/// strongSwan's syntax: `aes256gcm16-x25519-esn`, `aes256-sha512`.
impl fmt::Display for EspProposal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let esn_words: Vec<&'static str> = if self.esn == [false] {
            Vec::new()
        } else {
            self.esn
                .iter()
                .map(|b| if *b { "esn" } else { "noesn" })
                .collect()
        };
        join(
            f,
            self.encr
                .iter()
                .map(|e| e.name())
                .chain(self.integ.iter().map(|i| i.name()))
                .chain(self.dh.iter().map(|g| g.name()))
                .chain(addke_words(&self.addke))
                .chain(esn_words),
        )
    }
}
