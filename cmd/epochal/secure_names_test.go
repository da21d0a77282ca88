package main

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/epochal/epochal/internal/testkit/testserver"
)

// testCA is a certificate authority a test makes, to sign server
// certificates for the names it chooses.
type testCA struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
	file string // its certificate, PEM
	dir  string
}

func newTestCA(t *testing.T) *testCA {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	mustNoErr(t, err, "CA key")
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "epochal test CA"},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(24 * time.Hour),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	mustNoErr(t, err, "CA certificate")
	cert, err := x509.ParseCertificate(der)
	mustNoErr(t, err, "CA certificate")
	ca := &testCA{cert: cert, key: key, dir: t.TempDir()}
	ca.file = filepath.Join(ca.dir, "ca.crt")
	writePEM(t, ca.file, "CERTIFICATE", der)
	return ca
}

// issue writes a server certificate good for exactly the names given (IP
// addresses and DNS names) and its key, and returns their files.
func (ca *testCA) issue(t *testing.T, name string, ips []net.IP, dns []string) (certFile, keyFile string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	mustNoErr(t, err, "server key")
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(now.UnixNano()),
		Subject:      pkix.Name{CommonName: name},
		NotBefore:    now.Add(-time.Hour),
		NotAfter:     now.Add(24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
		IPAddresses:  ips,
		DNSNames:     dns,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, &key.PublicKey, ca.key)
	mustNoErr(t, err, "server certificate")
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	mustNoErr(t, err, "server key")
	certFile, keyFile = filepath.Join(ca.dir, name+".crt"), filepath.Join(ca.dir, name+".key")
	writePEM(t, certFile, "CERTIFICATE", der)
	writePEM(t, keyFile, "PRIVATE KEY", keyDER)
	return certFile, keyFile
}

func writePEM(t *testing.T, file, typ string, der []byte) {
	t.Helper()
	mustNoErr(t, os.WriteFile(file, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600), "write "+file)
}

// bundle writes the concatenation of the PEM files into one file.
func bundle(t *testing.T, files ...string) string {
	t.Helper()
	var all []byte
	for _, f := range files {
		b, err := os.ReadFile(f)
		mustNoErr(t, err, "read "+f)
		all = append(all, b...)
	}
	out := filepath.Join(t.TempDir(), "bundle.pem")
	mustNoErr(t, os.WriteFile(out, all, 0o600), "write bundle")
	return out
}

// serveCert makes a running TLS redis-server present another certificate
// (CONFIG SET reloads it).
func serveCert(t *testing.T, srv *testserver.Redis, certFile, keyFile string) {
	t.Helper()
	c := goredis.NewClient(&goredis.Options{Addr: srv.Addr, Username: srv.User, Password: srv.Password, TLSConfig: srv.ClientTLS()})
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	mustNoErr(t, c.Do(ctx, "CONFIG", "SET", "tls-cert-file", certFile, "tls-key-file", keyFile).Err(), "CONFIG SET tls-cert-file, tls-key-file")
}

// TestSecureSentinelTLSNames: with --sentinel-master and --tls, each
// server's certificate is checked against the name it is dialled by: the
// sentinel's against the --addr it is given (localhost), the master's
// against the address the sentinel names (127.0.0.1), which the master's
// certificate alone holds. (The first address's host name was the
// ServerName of every dial: the master's certificate was checked against
// "localhost" and refused.)
func TestSecureSentinelTLSNames(t *testing.T) {
	const pw = "sentinel-tls-Secret-10"
	secrets := []string{pw}
	ca := newTestCA(t)
	master := testserver.StartRedis(t, testserver.RedisOptions{TLS: true, Password: pw})
	cert, key := ca.issue(t, "master", []net.IP{net.IPv4(127, 0, 0, 1)}, nil) // not "localhost"
	serveCert(t, master, cert, key)
	host, port, _ := net.SplitHostPort(master.Addr)
	sentinel := testserver.StartRedis(t, testserver.RedisOptions{TLS: true, Sentinel: true, Args: []string{
		"tls-replication yes",         // the sentinel speaks TLS to the master
		"tls-ca-cert-file " + ca.file, // and trusts its certificate
		"sentinel monitor mymaster " + host + " " + port + " 1",
		"sentinel auth-pass mymaster " + pw,
	}})
	_, sport, _ := net.SplitHostPort(sentinel.Addr)
	cas := bundle(t, sentinel.CAFile, ca.file)
	// The sentinel's certificate (the testserver's) holds localhost and
	// 127.0.0.1; the master's only 127.0.0.1.
	r := func(extra ...string) []string {
		return append([]string{"--backend", "redis", "--addr", net.JoinHostPort("localhost", sport), "--sentinel-master", "mymaster",
			"--tls", "--tls-ca", cas, "--password", pw, "--prefix", "sntls"}, extra...)
	}
	wantCode(t, secrets, exitOK, nil, r("demo", "--duration", "200ms", "--accounts", "3")...)
	wantCode(t, secrets, exitOK, nil, r("clock")...)
	// A CA that signed neither is refused as untrusted, not unreachable
	// for another reason.
	wantCode(t, secrets, exitDown, []string{"certificate", "--tls-ca"}, r("--tls-ca", ca.file, "--connect-timeout", "3s", "clock")...)
}

// TestSecureClusterTLSNames: with --cluster and --tls, each node's
// certificate is checked against the address it is dialled by: --addr
// names node 0 as localhost (its certificate holds localhost and
// 127.0.0.1); the cluster names node 1, which holds the prefix's slot,
// as 127.0.0.1, the only name its certificate holds. (The first
// address's host name was the ServerName of every dial: node 1's
// certificate was checked against "localhost" and refused.)
func TestSecureClusterTLSNames(t *testing.T) {
	const pw = "cluster-tls-Secret-11"
	secrets := []string{pw}
	ctx := context.Background()
	ca := newTestCA(t)
	var nodes [2]*testserver.Redis
	for i := range nodes {
		nodes[i] = testserver.StartRedis(t, testserver.RedisOptions{TLS: true, Password: pw, Cluster: true, Args: []string{"tls-cluster yes"}})
	}
	cas := bundle(t, nodes[0].CAFile, nodes[1].CAFile, ca.file)
	pool := x509.NewCertPool()
	pem, err := os.ReadFile(cas)
	mustNoErr(t, err, "read CAs")
	pool.AppendCertsFromPEM(pem)
	var clients [2]*goredis.Client
	for i := range nodes {
		clients[i] = goredis.NewClient(&goredis.Options{Addr: nodes[i].Addr, Password: pw,
			TLSConfig: &tls.Config{RootCAs: pool, ServerName: "127.0.0.1", MinVersion: tls.VersionTLS12}})
		defer clients[i].Close()
		// The nodes speak TLS to each other on the cluster bus: each
		// trusts the others' CAs.
		mustNoErr(t, clients[i].ConfigSet(ctx, "tls-ca-cert-file", cas).Err(), "CONFIG SET tls-ca-cert-file")
	}
	cert, key := ca.issue(t, "node1", []net.IP{net.IPv4(127, 0, 0, 1)}, nil) // not "localhost"
	serveCert(t, nodes[1], cert, key)
	formCluster(t, nodes, clients)
	// A prefix whose slot node 1 holds.
	prefix := ""
	for i := 0; prefix == ""; i++ {
		p := "cltls" + strconv.Itoa(i)
		slot, err := clients[0].ClusterKeySlot(ctx, "{"+p+"}:x").Result()
		mustNoErr(t, err, "CLUSTER KEYSLOT")
		if slot > 8191 {
			prefix = p
		}
	}
	_, port0, _ := net.SplitHostPort(nodes[0].Addr)
	r := func(extra ...string) []string {
		return append([]string{"--backend", "redis", "--addr", net.JoinHostPort("localhost", port0), "--cluster",
			"--tls", "--tls-ca", cas, "--password", pw, "--prefix", prefix}, extra...)
	}
	wantCode(t, secrets, exitOK, nil, r("demo", "--duration", "200ms", "--accounts", "3")...)
	wantCode(t, secrets, exitOK, nil, r("clock")...)
	if keys, err := clients[1].Keys(ctx, "{"+prefix+"}:*").Result(); err != nil || len(keys) < 3 {
		t.Errorf("keys under {%s} on node 1: %v, %v; want the demo's", prefix, keys, err)
	}
}
