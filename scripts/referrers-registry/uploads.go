package main

// Blob uploads spooled to disk. go-containerregistry 0.20.1's pkg/registry keeps a
// chunked upload (POST, PATCH..., PUT: what docker push does) in memory until the
// final PUT: a 300 MB layer took the process to 1.1 GB. Here each upload session
// is a file under DATA/uploads/, hashed at the final PUT and renamed into the
// layout of registry.NewDiskBlobHandler (DATA/blobs/sha256/<hex>), from where
// pkg/registry serves it. Sessions survive a restart too.

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
)

var (
	uploadPath = regexp.MustCompile(`^/v2/(.+)/blobs/uploads/([0-9a-f]*)$`)
	digestRe   = regexp.MustCompile(`^sha256:[0-9a-f]{64}$`)
)

type uploads struct {
	dir   string // DATA/uploads
	blobs string // DATA/blobs
}

func uploadError(w http.ResponseWriter, status int, code, msg string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	fmt.Fprintf(w, `{"errors":[{"code":%q,"message":%q}]}`, code, msg)
}

// handle serves POST/PATCH/PUT/GET/DELETE on /v2/<name>/blobs/uploads/[<id>];
// it returns false for any other request.
func (u *uploads) handle(w http.ResponseWriter, req *http.Request) bool {
	m := uploadPath.FindStringSubmatch(req.URL.Path)
	if m == nil {
		return false
	}
	name, id := m[1], m[2]
	switch {
	case req.Method == http.MethodPost && id == "":
		u.start(w, req, name)
	case id == "":
		uploadError(w, http.StatusMethodNotAllowed, "UNSUPPORTED", "POST to start an upload")
	case req.Method == http.MethodPatch:
		if size, ok := u.appendBody(w, req, id); ok {
			u.accepted(w, name, id, size)
		}
	case req.Method == http.MethodPut:
		if _, ok := u.appendBody(w, req, id); ok {
			u.commit(w, name, id, req.URL.Query().Get("digest"))
		}
	case req.Method == http.MethodGet:
		if fi, err := os.Stat(filepath.Join(u.dir, id)); err == nil {
			w.Header().Set("Location", fmt.Sprintf("/v2/%s/blobs/uploads/%s", name, id))
			w.Header().Set("Range", byteRange(fi.Size()))
			w.WriteHeader(http.StatusNoContent)
		} else {
			uploadError(w, http.StatusNotFound, "BLOB_UPLOAD_UNKNOWN", "unknown upload")
		}
	case req.Method == http.MethodDelete:
		if os.Remove(filepath.Join(u.dir, id)) == nil {
			w.WriteHeader(http.StatusNoContent)
		} else {
			uploadError(w, http.StatusNotFound, "BLOB_UPLOAD_UNKNOWN", "unknown upload")
		}
	default:
		uploadError(w, http.StatusMethodNotAllowed, "UNSUPPORTED", req.Method+" on an upload")
	}
	return true
}

// byteRange is the Range header of an upload of size bytes ("0-0" when empty, as distribution says).
func byteRange(size int64) string {
	if size > 0 {
		size--
	}
	return fmt.Sprintf("0-%d", size)
}

func (u *uploads) blobPath(digest string) string {
	return filepath.Join(u.blobs, "sha256", strings.TrimPrefix(digest, "sha256:"))
}

// start: a cross-repository mount (blobs are shared by all repositories), a
// monolithic upload (?digest=, body in this request) or a new session.
func (u *uploads) start(w http.ResponseWriter, req *http.Request, name string) {
	if d := req.URL.Query().Get("mount"); digestRe.MatchString(d) {
		if _, err := os.Stat(u.blobPath(d)); err == nil {
			w.Header().Set("Location", fmt.Sprintf("/v2/%s/blobs/%s", name, d))
			w.Header().Set("Docker-Content-Digest", d)
			w.WriteHeader(http.StatusCreated)
			return
		}
	}
	buf := make([]byte, 16)
	if _, err := rand.Read(buf); err != nil {
		uploadError(w, http.StatusInternalServerError, "UNKNOWN", err.Error())
		return
	}
	id := hex.EncodeToString(buf)
	f, err := os.OpenFile(filepath.Join(u.dir, id), os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o644)
	if err != nil {
		uploadError(w, http.StatusInternalServerError, "UNKNOWN", err.Error())
		return
	}
	f.Close()
	if d := req.URL.Query().Get("digest"); d != "" {
		if _, ok := u.appendBody(w, req, id); ok {
			u.commit(w, name, id, d)
		}
		return
	}
	u.accepted(w, name, id, 0)
}

func (u *uploads) accepted(w http.ResponseWriter, name, id string, size int64) {
	w.Header().Set("Location", fmt.Sprintf("/v2/%s/blobs/uploads/%s", name, id))
	w.Header().Set("Docker-Upload-UUID", id)
	w.Header().Set("Range", byteRange(size))
	w.Header().Set("Content-Length", "0")
	w.WriteHeader(http.StatusAccepted)
}

// appendBody streams the request body onto the session's file; a Content-Range
// must start where the file ends. Returns the new size.
func (u *uploads) appendBody(w http.ResponseWriter, req *http.Request, id string) (int64, bool) {
	f, err := os.OpenFile(filepath.Join(u.dir, id), os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		uploadError(w, http.StatusNotFound, "BLOB_UPLOAD_UNKNOWN", "unknown upload")
		return 0, false
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		uploadError(w, http.StatusInternalServerError, "UNKNOWN", err.Error())
		return 0, false
	}
	if cr := req.Header.Get("Content-Range"); cr != "" {
		start, _, _ := strings.Cut(strings.TrimPrefix(cr, "bytes="), "-")
		if n, err := strconv.ParseInt(start, 10, 64); err != nil || n != fi.Size() {
			w.Header().Set("Range", byteRange(fi.Size()))
			uploadError(w, http.StatusRequestedRangeNotSatisfiable, "BLOB_UPLOAD_INVALID", "range does not continue the upload")
			return 0, false
		}
	}
	n, err := io.Copy(f, req.Body)
	if err != nil {
		uploadError(w, http.StatusInternalServerError, "BLOB_UPLOAD_INVALID", err.Error())
		return 0, false
	}
	return fi.Size() + n, true
}

// commit checks the digest of the session's file and moves it among the blobs.
func (u *uploads) commit(w http.ResponseWriter, name, id, digest string) {
	path := filepath.Join(u.dir, id)
	if !digestRe.MatchString(digest) {
		os.Remove(path)
		uploadError(w, http.StatusBadRequest, "DIGEST_INVALID", "a sha256 digest is required")
		return
	}
	f, err := os.Open(path)
	if err != nil {
		uploadError(w, http.StatusNotFound, "BLOB_UPLOAD_UNKNOWN", "unknown upload")
		return
	}
	h := sha256.New()
	_, err = io.Copy(h, f)
	f.Close()
	if err != nil {
		uploadError(w, http.StatusInternalServerError, "UNKNOWN", err.Error())
		return
	}
	if got := "sha256:" + hex.EncodeToString(h.Sum(nil)); got != digest {
		os.Remove(path)
		uploadError(w, http.StatusBadRequest, "DIGEST_INVALID", fmt.Sprintf("digest %s does not match the content (%s)", digest, got))
		return
	}
	if err := os.MkdirAll(filepath.Dir(u.blobPath(digest)), 0o755); err == nil {
		err = os.Rename(path, u.blobPath(digest))
	}
	if err != nil {
		uploadError(w, http.StatusInternalServerError, "UNKNOWN", err.Error())
		return
	}
	w.Header().Set("Location", fmt.Sprintf("/v2/%s/blobs/%s", name, digest))
	w.Header().Set("Docker-Content-Digest", digest)
	w.Header().Set("Content-Length", "0")
	w.WriteHeader(http.StatusCreated)
}
