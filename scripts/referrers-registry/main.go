// referrers-registry: an OCI registry that serves the OCI 1.1 referrers API,
// for tests and the demo. It is go-containerregistry's pkg/registry
// (registry.WithReferrersSupport(true), blobs on disk with
// registry.NewDiskBlobHandler) behind a small wrapper that adds what
// go-containerregistry 0.20.1 leaves out:
//
//   - GET /v2/<name>/referrers/<digest>: each descriptor's artifactType is the
//     manifest's own artifactType, else its config's media type (0.20.1 only
//     reads the config's, so `oras attach --artifact-type T` was listed as
//     application/vnd.oci.empty.v1+json); the manifests' annotations are
//     included; `?artifactType=` filters (answered with the header
//     OCI-Filters-Applied: artifactType); descriptors are sorted by digest; an
//     unknown repository gives an empty index, never 404 (distribution-spec 1.1).
//
//   - PUT of a manifest with a subject answers with the OCI-Subject header.
//
//   - Manifests survive a restart: each accepted manifest PUT and DELETE is
//     appended to DATA/manifests.jsonl and replayed at start (pkg/registry keeps
//     manifests in memory only). Blobs live in DATA/blobs.
//
//   - An access log, one line a request in the common log format
//     (`127.0.0.1 - - [time] "GET /v2/... HTTP/1.1" 200 123`), so tests can read
//     which blobs a client fetched.
//
//   - Blob uploads are spooled to files (uploads.go): pkg/registry 0.20.1 holds a
//     chunked upload in memory until its final PUT (a 300 MB layer took 1.1 GB).
//
// Everything survives a restart: blobs, manifests and tags (replayed), upload sessions.
// Not implemented (as in pkg/registry): authentication, garbage collection, pagination
// of the catalog; DELETE of a manifest by digest leaves tags that point at it.
//
// Usage: referrers-registry -addr 127.0.0.1:5001 -data DIR [-access-log FILE]
//
// Build (GOPATH mode, Debian's golang-go and the unpacked Debian source package
// golang-github-google-go-containerregistry-dev; see scripts/referrers-registry/registry.sh):
//
//	GO111MODULE=off GOPATH=$PWD/gopath:GGCR/usr/share/gocode:/usr/share/gocode go build -o referrers-registry .
package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"os"
	"os/signal"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/google/go-containerregistry/pkg/registry"
)

// Set at build time (-ldflags -X main.ggcrVersion=...).
var ggcrVersion = "unknown"

const indexType = "application/vnd.oci.image.index.v1+json"

type descriptor struct {
	MediaType    string            `json:"mediaType"`
	Digest       string            `json:"digest"`
	Size         int64             `json:"size"`
	ArtifactType string            `json:"artifactType,omitempty"`
	Annotations  map[string]string `json:"annotations,omitempty"`
}

type index struct {
	SchemaVersion int          `json:"schemaVersion"`
	MediaType     string       `json:"mediaType"`
	Manifests     []descriptor `json:"manifests"`
}

// The fields of a manifest (image or index) the referrers listing needs.
type manifestFields struct {
	ArtifactType string            `json:"artifactType"`
	Config       *descriptor       `json:"config"`
	Subject      *descriptor       `json:"subject"`
	Annotations  map[string]string `json:"annotations"`
}

// One journal line: an accepted manifest PUT (Body set) or DELETE.
type record struct {
	Op          string `json:"op"` // "put" or "delete"
	Path        string `json:"path"`
	ContentType string `json:"contentType,omitempty"`
	Body        []byte `json:"body,omitempty"` // base64 in JSON
}

type server struct {
	inner   http.Handler
	up      *uploads
	journal *os.File
	access  *log.Logger
	mu      sync.Mutex
}

// route splits /v2/<name>/<kind>/<ref> (kind: manifests, referrers, ...).
func route(path string) (name, kind, ref string, ok bool) {
	elem := strings.Split(strings.TrimPrefix(path, "/v2/"), "/")
	if !strings.HasPrefix(path, "/v2/") || len(elem) < 3 {
		return "", "", "", false
	}
	n := len(elem)
	return strings.Join(elem[:n-2], "/"), elem[n-2], elem[n-1], true
}

// statusWriter records the status and size, and adds OCI-Subject to a 201.
type statusWriter struct {
	http.ResponseWriter
	status  int
	size    int64
	subject string
}

func (w *statusWriter) WriteHeader(code int) {
	if code == http.StatusCreated && w.subject != "" {
		w.Header().Set("OCI-Subject", w.subject)
	}
	w.status = code
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Write(b []byte) (int, error) {
	if w.status == 0 {
		w.WriteHeader(http.StatusOK)
	}
	n, err := w.ResponseWriter.Write(b)
	w.size += int64(n)
	return n, err
}

func (s *server) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	sw := &statusWriter{ResponseWriter: w}
	start := time.Now()
	defer func() {
		if sw.status == 0 {
			sw.status = http.StatusOK
		}
		host := req.RemoteAddr
		if i := strings.LastIndex(host, ":"); i > 0 {
			host = host[:i]
		}
		s.access.Printf("%s - - [%s] %q %d %d %q %q %.3fs", host, start.Format("02/Jan/2006:15:04:05 -0700"),
			req.Method+" "+req.URL.RequestURI()+" "+req.Proto, sw.status, sw.size, req.Referer(), req.UserAgent(),
			time.Since(start).Seconds())
	}()
	if s.up.handle(sw, req) {
		return
	}
	name, kind, ref, ok := route(req.URL.Path)
	switch {
	case ok && kind == "referrers" && req.Method == http.MethodGet:
		s.referrers(sw, req, name, ref)
	case ok && kind == "manifests" && req.Method == http.MethodPut:
		s.putManifest(sw, req)
	case ok && kind == "manifests" && req.Method == http.MethodDelete:
		s.inner.ServeHTTP(sw, req)
		if sw.status == http.StatusAccepted {
			s.record(record{Op: "delete", Path: req.URL.Path})
		}
	default:
		s.inner.ServeHTTP(sw, req)
	}
}

func (s *server) putManifest(sw *statusWriter, req *http.Request) {
	body, err := io.ReadAll(req.Body)
	if err != nil {
		http.Error(sw, err.Error(), http.StatusBadRequest)
		return
	}
	var m manifestFields
	if json.Unmarshal(body, &m) == nil && m.Subject != nil {
		sw.subject = m.Subject.Digest
	}
	req.Body = io.NopCloser(bytes.NewReader(body))
	s.inner.ServeHTTP(sw, req)
	if sw.status == http.StatusCreated {
		s.record(record{Op: "put", Path: req.URL.Path, ContentType: req.Header.Get("Content-Type"), Body: body})
	}
}

// record appends one line to the journal and syncs it (manifests are small).
func (s *server) record(r record) {
	line, _ := json.Marshal(r)
	s.mu.Lock()
	defer s.mu.Unlock()
	_, err := s.journal.Write(append(line, '\n'))
	if err == nil {
		err = s.journal.Sync()
	}
	if err != nil {
		log.Printf("referrers-registry: journal: %v (this manifest will not survive a restart)", err)
	}
}

// get asks pkg/registry for a path and returns the recorded response.
func (s *server) get(path string) *httptest.ResponseRecorder {
	rec := httptest.NewRecorder()
	s.inner.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, path, nil))
	return rec
}

func (s *server) referrers(w http.ResponseWriter, req *http.Request, name, digest string) {
	rec := httptest.NewRecorder()
	s.inner.ServeHTTP(rec, req)
	out := index{SchemaVersion: 2, MediaType: indexType, Manifests: []descriptor{}}
	switch {
	case rec.Code == http.StatusOK:
		var listed index
		if err := json.Unmarshal(rec.Body.Bytes(), &listed); err != nil {
			http.Error(w, "referrers: "+err.Error(), http.StatusInternalServerError)
			return
		}
		want := req.URL.Query()["artifactType"]
		for _, d := range listed.Manifests {
			if got := s.get("/v2/" + name + "/manifests/" + d.Digest); got.Code == http.StatusOK {
				var m manifestFields
				if json.Unmarshal(got.Body.Bytes(), &m) == nil {
					d.ArtifactType, d.Annotations = m.ArtifactType, m.Annotations
					if d.ArtifactType == "" && m.Config != nil {
						d.ArtifactType = m.Config.MediaType
					}
				}
			}
			if len(want) == 0 || contains(want, d.ArtifactType) {
				out.Manifests = append(out.Manifests, d)
			}
		}
		sort.Slice(out.Manifests, func(i, j int) bool { return out.Manifests[i].Digest < out.Manifests[j].Digest })
		if len(want) > 0 {
			w.Header().Set("OCI-Filters-Applied", "artifactType")
		}
	case rec.Code == http.StatusNotFound && strings.Contains(rec.Body.String(), "NAME_UNKNOWN"):
		// An unknown repository has no referrers: an empty index.
	default: // 400 for a malformed digest, as pkg/registry says
		for k, v := range rec.Header() {
			w.Header()[k] = v
		}
		w.WriteHeader(rec.Code)
		_, _ = w.Write(rec.Body.Bytes())
		return
	}
	body, _ := json.Marshal(out)
	w.Header().Set("Content-Type", indexType)
	w.Header().Set("Content-Length", fmt.Sprint(len(body)))
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write(body)
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// replay feeds the journal back to pkg/registry; returns how many records it applied.
func replay(inner http.Handler, path string) (int, error) {
	f, err := os.Open(path)
	if os.IsNotExist(err) {
		return 0, nil
	} else if err != nil {
		return 0, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 64<<20)
	n := 0
	for line := 1; sc.Scan(); line++ {
		var r record
		if len(bytes.TrimSpace(sc.Bytes())) == 0 {
			continue
		}
		if err := json.Unmarshal(sc.Bytes(), &r); err != nil {
			return n, fmt.Errorf("%s line %d: %v", path, line, err)
		}
		method := http.MethodPut
		if r.Op == "delete" {
			method = http.MethodDelete
		}
		req := httptest.NewRequest(method, r.Path, bytes.NewReader(r.Body))
		req.Header.Set("Content-Type", r.ContentType)
		rec := httptest.NewRecorder()
		inner.ServeHTTP(rec, req)
		if rec.Code >= 300 && r.Op == "put" {
			log.Printf("referrers-registry: %s line %d: replaying PUT %s: %d %s (skipped)",
				path, line, r.Path, rec.Code, strings.TrimSpace(rec.Body.String()))
			continue
		}
		n++
	}
	return n, sc.Err()
}

func main() {
	addr := flag.String("addr", "127.0.0.1:5001", "address to listen on")
	data := flag.String("data", "", "folder for blobs/ and manifests.jsonl (required)")
	accessLog := flag.String("access-log", "", "access log file (default: stderr)")
	version := flag.Bool("version", false, "print the go-containerregistry version and exit")
	flag.Parse()
	if *version {
		fmt.Println("go-containerregistry", ggcrVersion)
		return
	}
	if *data == "" {
		log.Fatal("referrers-registry: -data DIR is required")
	}
	up := &uploads{dir: filepath.Join(*data, "uploads"), blobs: filepath.Join(*data, "blobs")}
	for _, d := range []string{up.dir, up.blobs} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			log.Fatal(err)
		}
	}
	access := log.New(os.Stderr, "", 0)
	if *accessLog != "" {
		f, err := os.OpenFile(*accessLog, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
		if err != nil {
			log.Fatal(err)
		}
		access = log.New(f, "", 0)
	}
	inner := registry.New(registry.WithReferrersSupport(true),
		registry.WithBlobHandler(registry.NewDiskBlobHandler(up.blobs)),
		registry.Logger(log.New(io.Discard, "", 0)))
	journalPath := filepath.Join(*data, "manifests.jsonl")
	n, err := replay(inner, journalPath)
	if err != nil {
		log.Fatalf("referrers-registry: %v", err)
	}
	journal, err := os.OpenFile(journalPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		log.Fatal(err)
	}
	srv := &http.Server{Addr: *addr, Handler: &server{inner: inner, up: up, journal: journal, access: access}}
	go func() {
		sig := make(chan os.Signal, 1)
		signal.Notify(sig, syscall.SIGTERM, syscall.SIGINT)
		<-sig
		_ = srv.Close()
	}()
	log.Printf("referrers-registry (go-containerregistry %s) on %s, data %s, %d manifest records replayed",
		ggcrVersion, *addr, *data, n)
	if err := srv.ListenAndServe(); err != nil && err != http.ErrServerClosed {
		log.Fatal(err)
	}
	log.Print("referrers-registry: stopped")
}
