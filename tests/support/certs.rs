//! Test certificates made with rcgen (ECDSA P-256), written as PEM files into a temporary
//! directory: a CA, a server certificate for `localhost` and 127.0.0.1, client
//! certificates signed by the CA (by CN), an expired one, and one from a foreign CA.

use std::path::{Path, PathBuf};

use rcgen::{BasicConstraints, Certificate, CertificateParams, DnType, IsCa, KeyPair};

/// A CA that signs test certificates.
pub struct TestCa {
    cert: Certificate,
    key: KeyPair,
    /// The directory the files go to (removed with it).
    pub dir: tempfile::TempDir,
}

/// A certificate and its key, as files.
#[derive(Debug, Clone)]
pub struct Pem {
    /// The certificate (PEM).
    pub cert: PathBuf,
    /// Its private key (PEM, PKCS#8).
    pub key: PathBuf,
}

impl TestCa {
    /// A new CA named `name`, its certificate written to `ca.pem`.
    pub fn new(name: &str) -> Self {
        let key = KeyPair::generate().expect("CA key");
        let mut p = CertificateParams::new(Vec::<String>::new()).expect("CA params");
        p.distinguished_name.push(DnType::CommonName, name);
        p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let cert = p.self_signed(&key).expect("CA certificate");
        let dir = tempfile::tempdir().expect("temporary directory");
        std::fs::write(dir.path().join("ca.pem"), cert.pem()).expect("write ca.pem");
        TestCa { cert, key, dir }
    }

    /// The CA certificate's file.
    pub fn ca(&self) -> PathBuf {
        self.dir.path().join("ca.pem")
    }

    fn issue(&self, file: &str, params: CertificateParams) -> Pem {
        let key = KeyPair::generate().expect("key");
        let cert = params.signed_by(&key, &self.cert, &self.key).expect("certificate");
        let pem =
            Pem { cert: self.dir.path().join(format!("{file}.pem")), key: self.dir.path().join(format!("{file}.key")) };
        std::fs::write(&pem.cert, cert.pem()).expect("write certificate");
        std::fs::write(&pem.key, key.serialize_pem()).expect("write key");
        pem
    }

    /// A server certificate for `localhost` and 127.0.0.1, CN `cn`.
    pub fn server(&self, file: &str, cn: &str) -> Pem {
        let mut p = CertificateParams::new(vec!["localhost".to_string(), "127.0.0.1".to_string()]).expect("params");
        p.distinguished_name.push(DnType::CommonName, cn);
        self.issue(file, p)
    }

    /// A client certificate with CN `cn`.
    pub fn client(&self, file: &str, cn: &str) -> Pem {
        let mut p = CertificateParams::new(Vec::<String>::new()).expect("params");
        p.distinguished_name.push(DnType::CommonName, cn);
        p.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ClientAuth];
        self.issue(file, p)
    }

    /// A client certificate with CN `cn` that expired in 2021.
    pub fn expired_client(&self, file: &str, cn: &str) -> Pem {
        let mut p = CertificateParams::new(Vec::<String>::new()).expect("params");
        p.distinguished_name.push(DnType::CommonName, cn);
        p.not_before = rcgen::date_time_ymd(2020, 1, 1);
        p.not_after = rcgen::date_time_ymd(2021, 1, 1);
        self.issue(file, p)
    }
}

/// A file's text, for comparing certificates.
pub fn read(path: &Path) -> String {
    std::fs::read_to_string(path).expect("read PEM")
}
