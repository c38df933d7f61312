package document

import (
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"strconv"
	"unsafe"

	"github.com/logpipe/logpipe/common/record"
)

// idVersion starts every hashed input, so that a later change of the
// inputs cannot give an _id that an earlier one gave.
const idVersion = "logpipe-line-1"

// AppendRecordID appends the _id of record r read at src.
//
// A record that carries its source position (record.HasPosition) gets an
// _id derived from it alone, so that a line the agent sent twice (after a
// crash between Kafka's acknowledgement and the next save of its offsets)
// becomes one document: the second create answers 409. The _id is the
// base64url encoding, without padding, of the first 20 bytes (160 bits) of
// the SHA-256 of these inputs, each written as its length in 4 bytes big
// endian followed by its bytes:
//
//	"logpipe-line-1", agent.name, log.file.device_id, log.file.inode,
//	log.file.fingerprint, log.offset (decimal), message
//
// The fingerprint covers the file's first bytes before the line (see
// record.FingerprintSize), which tells a file truncated and written again,
// or a new file that reuses a deleted file's inode, from the earlier one.
// The message covers what the fingerprint cannot: a line at an offset past
// the first 1 KiB of a file rewritten with the same first KiB. Two lines
// therefore get the same _id only when the same agent read the same bytes
// at the same offset of files with the same device, inode and first bytes:
// then they are the same line, or a rewrite that cannot be told from it.
// The inputs leave out what may differ between the first send and a
// resend: @timestamp (the time of reading), job, labels, host and path (a
// file renamed meanwhile).
//
// Every other record keeps "<topic>-<partition>-<offset>" (Source.AppendID).
func AppendRecordID(dst []byte, r *record.Record, src Source) []byte {
	if !r.HasPosition() {
		return src.AppendID(dst)
	}
	var num [20]byte
	h := sha256.New()
	for _, in := range [...]string{
		idVersion,
		r.Agent.Name,
		r.Log.File.DeviceID,
		r.Log.File.Inode,
		r.Log.File.Fingerprint,
		string(strconv.AppendInt(num[:0], r.Log.Offset, 10)),
		r.Message,
	} {
		var n [4]byte
		binary.BigEndian.PutUint32(n[:], uint32(len(in)))
		h.Write(n[:])
		h.Write(unsafe.Slice(unsafe.StringData(in), len(in))) // read only: no copy
	}
	var sum [sha256.Size]byte
	return base64.RawURLEncoding.AppendEncode(dst, h.Sum(sum[:0])[:20])
}
