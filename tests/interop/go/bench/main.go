// Command bench is Go DRPC's side of weir's side-by-side benchmarks (bench/src/main.rs and
// core/benches/codec.rs run it and put its figures beside weir's in the same run).
//
// It is a program of its own rather than flags of the interop peer (../peer): the peer is a test
// fixture that checks every result exactly and serves one case per process, and timing loops,
// warm-ups and a codec benchmark would blur what it tests. Both programs use the same module, so
// the same pinned storj.io/drpc v1.1.0 with its stock manager options.
//
//	bench -mode unary -calls N -size 64
//	    an in-process server and client over one loopback TCP connection; N sequential echo
//	    calls of size bytes after a warm-up of 1,000.
//	bench -mode bulk -messages N -size 1048576
//	    the same connection; one stream sends N messages of size bytes to a sink that counts
//	    them and answers the total, after a warm-up stream of 32 messages.
//	bench -mode assemble -warmup 300ms -measure 1500ms < wire
//	    drpcwire.Reader over batches of 1,000 one-frame packets of 16 bytes, ids rising across
//	    batches through one reader, as weir's "assemble small" case. stdin is weir's first batch
//	    (ids 1 to 1,000); the program checks that its own batch is the same bytes first.
//
// Each mode prints name=value lines; the timed figures come with what they counted, and a mode
// that counted nothing or timed nothing fails instead of printing a figure.
package main

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"time"

	"storj.io/drpc"
	"storj.io/drpc/drpcconn"
	"storj.io/drpc/drpcmux"
	"storj.io/drpc/drpcserver"
	"storj.io/drpc/drpcwire"
)

const (
	rpcEcho = "/echo"
	rpcSink = "/sink"
)

// raw passes bytes through: messages are *[]byte. Unmarshal copies, because buf belongs to the
// stream and is reused (what any real encoding does too).
type raw struct{}

func (raw) Marshal(msg drpc.Message) ([]byte, error) { return *msg.(*[]byte), nil }

func (raw) Unmarshal(buf []byte, msg drpc.Message) error {
	*msg.(*[]byte) = append([]byte{}, buf...)
	return nil
}

// counted is the sink's encoding: it records a message's length and keeps none of its bytes,
// as weir's sink counts the bytes of the message it is handed and drops it.
type counted struct{}

func (counted) Marshal(msg drpc.Message) ([]byte, error) { return *msg.(*[]byte), nil }

func (counted) Unmarshal(buf []byte, msg drpc.Message) error {
	*msg.(*int) = len(buf)
	return nil
}

type service struct{}

func (service) Echo(ctx context.Context, in *[]byte) (*[]byte, error) { return in, nil }

// Sink reads until the client closes its side and answers the byte count, 8 bytes little-endian.
func (service) Sink(stream drpc.Stream) error {
	var total uint64
	for {
		var n int
		err := stream.MsgRecv(&n, counted{})
		if err == io.EOF {
			break
		} else if err != nil {
			return err
		}
		total += uint64(n)
	}
	reply := binary.LittleEndian.AppendUint64(nil, total)
	return stream.MsgSend(&reply, raw{})
}

// description tells drpcmux the two rpcs, as generated code would.
type description struct{}

func (description) NumMethods() int { return 2 }

func (description) Method(n int) (string, drpc.Encoding, drpc.Receiver, interface{}, bool) {
	switch n {
	case 0:
		return rpcEcho, raw{}, func(srv interface{}, ctx context.Context, in1, _ interface{}) (drpc.Message, error) {
			return srv.(service).Echo(ctx, in1.(*[]byte))
		}, service.Echo, true
	case 1:
		return rpcSink, raw{}, func(srv interface{}, _ context.Context, in1, _ interface{}) (drpc.Message, error) {
			return nil, srv.(service).Sink(in1.(drpc.Stream))
		}, service.Sink, true
	}
	return "", nil, nil, nil, false
}

// connect starts a server on loopback TCP and returns a client connection to it, with stock
// options on both sides. Go sets TCP_NODELAY on both ends by default, as weir's bench does.
func connect(ctx context.Context) (*drpcconn.Conn, error) {
	mux := drpcmux.New()
	if err := mux.Register(service{}, description{}); err != nil {
		return nil, err
	}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	srv := drpcserver.New(mux)
	go func() { _ = srv.Serve(ctx, lis) }()
	tcp, err := net.Dial("tcp", lis.Addr().String())
	if err != nil {
		return nil, err
	}
	return drpcconn.New(tcp), nil
}

func echo(ctx context.Context, conn *drpcconn.Conn, request []byte) error {
	var reply []byte
	if err := conn.Invoke(ctx, rpcEcho, raw{}, &request, &reply); err != nil {
		return err
	}
	if !bytes.Equal(reply, request) {
		return fmt.Errorf("echo of %d bytes came back as %d different bytes", len(request), len(reply))
	}
	return nil
}

func unary(calls, size int) error {
	if calls <= 0 {
		return errors.New("-calls must be positive")
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	conn, err := connect(ctx)
	if err != nil {
		return err
	}
	defer conn.Close()
	request := bytes.Repeat([]byte{7}, size)
	for i := 0; i < 1000; i++ {
		if err := echo(ctx, conn, request); err != nil {
			return err
		}
	}
	started := time.Now()
	for i := 0; i < calls; i++ {
		if err := echo(ctx, conn, request); err != nil {
			return err
		}
	}
	elapsed := time.Since(started).Seconds()
	if elapsed <= 0 {
		return errors.New("no time measured")
	}
	fmt.Printf("calls=%d\nseconds=%.6f\ncalls_per_sec=%.1f\n", calls, elapsed, float64(calls)/elapsed)
	return nil
}

// sink sends messages of chunk on one stream and checks the count the server answers.
func sink(ctx context.Context, conn *drpcconn.Conn, chunk []byte, messages int) error {
	stream, err := conn.NewStream(ctx, rpcSink, raw{})
	if err != nil {
		return err
	}
	defer stream.Close()
	for i := 0; i < messages; i++ {
		if err := stream.MsgSend(&chunk, raw{}); err != nil {
			return err
		}
	}
	if err := stream.CloseSend(); err != nil {
		return err
	}
	var reply []byte
	if err := stream.MsgRecv(&reply, raw{}); err != nil {
		return err
	}
	want := uint64(len(chunk)) * uint64(messages)
	if len(reply) != 8 || binary.LittleEndian.Uint64(reply) != want {
		return fmt.Errorf("sent %d bytes, the sink answered %x", want, reply)
	}
	return nil
}

func bulk(messages, size int) error {
	if messages <= 0 || size <= 0 {
		return errors.New("-messages and -size must be positive")
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	conn, err := connect(ctx)
	if err != nil {
		return err
	}
	defer conn.Close()
	chunk := bytes.Repeat([]byte{0x5a}, size)
	if err := sink(ctx, conn, chunk, 32); err != nil {
		return err
	}
	started := time.Now()
	if err := sink(ctx, conn, chunk, messages); err != nil {
		return err
	}
	elapsed := time.Since(started).Seconds()
	if elapsed <= 0 {
		return errors.New("no time measured")
	}
	sent := float64(size) * float64(messages)
	fmt.Printf("bytes=%.0f\nseconds=%.6f\nmib_per_sec=%.1f\n", sent, elapsed, sent/elapsed/(1<<20))
	return nil
}

const (
	smallCount = 1000
	smallData  = 16
)

// smallBatch is what weir's packets_wire(first, 1000, 16) builds: message packets on stream 1,
// ids first to first+999, each one frame with 16 data bytes (byte i is i*7+3).
func smallBatch(first uint64) []byte {
	data := make([]byte, smallData)
	for i := range data {
		data[i] = byte(i*7 + 3)
	}
	var out []byte
	for i := uint64(0); i < smallCount; i++ {
		out = drpcwire.AppendFrame(out, drpcwire.Frame{
			Data: data,
			ID:   drpcwire.ID{Stream: 1, Message: first + i},
			Kind: drpcwire.KindMessage,
			Done: true,
		})
	}
	return out
}

// source hands the reader one batch at a time, as a socket hands over what arrived.
type source struct{ rest []byte }

func (s *source) Read(p []byte) (int, error) {
	if len(s.rest) == 0 {
		return 0, io.EOF
	}
	n := copy(p, s.rest)
	s.rest = s.rest[n:]
	return n, nil
}

// assemble times one reader through fresh batches, each built untimed just before it is read,
// for warmup and then measure, and returns the mean nanoseconds per packet of the measured part.
// reuse reads each packet into the previous packet's buffer, as drpcmanager does
// (ReadPacketUsing(pkt.Data[:0])); otherwise ReadPacket allocates each packet's data.
func assemble(warmup, measure time.Duration, reuse bool) (float64, error) {
	src := &source{}
	rd := drpcwire.NewReader(src)
	var pkt drpcwire.Packet
	next := uint64(1)
	var timed time.Duration
	var packets int
	begin := time.Now()
	for {
		since := time.Since(begin)
		if since >= warmup+measure {
			break
		}
		src.rest = smallBatch(next)
		started := time.Now()
		for i := 0; i < smallCount; i++ {
			var err error
			if reuse {
				pkt, err = rd.ReadPacketUsing(pkt.Data[:0])
			} else {
				pkt, err = rd.ReadPacket()
			}
			if err != nil {
				return 0, err
			}
			if pkt.ID.Message != next+uint64(i) || len(pkt.Data) != smallData {
				return 0, fmt.Errorf("read %v, want message %d", pkt, next+uint64(i))
			}
		}
		elapsed := time.Since(started)
		next += smallCount
		if since >= warmup {
			timed += elapsed
			packets += smallCount
		}
	}
	if packets == 0 || timed <= 0 {
		return 0, errors.New("no packets timed")
	}
	return float64(timed.Nanoseconds()) / float64(packets), nil
}

func assembleMode(warmup, measure time.Duration) error {
	want, err := io.ReadAll(os.Stdin)
	if err != nil {
		return err
	}
	if got := smallBatch(1); !bytes.Equal(got, want) {
		return fmt.Errorf("Go's batch (%d bytes) differs from the %d bytes on stdin", len(got), len(want))
	}
	reused, err := assemble(warmup, measure, true)
	if err != nil {
		return err
	}
	allocated, err := assemble(warmup, measure, false)
	if err != nil {
		return err
	}
	// What the reader's own copy from its io.Reader costs, for the record: weir's case starts
	// from bytes already in its receive buffer; Go's reader must copy them out of an io.Reader.
	batch := smallBatch(1)
	buf := make([]byte, len(batch))
	copies := 0
	started := time.Now()
	for time.Since(started) < 100*time.Millisecond {
		for i := 0; i < 100; i++ {
			copy(buf, batch)
		}
		copies += 100
	}
	copyNs := float64(time.Since(started).Nanoseconds()) / float64(copies) / smallCount
	fmt.Printf("batch_bytes=%d\nns_per_packet=%.3f\nns_per_packet_alloc=%.3f\ncopy_ns_per_packet=%.3f\n",
		len(batch), reused, allocated, copyNs)
	return nil
}

func main() {
	mode := flag.String("mode", "", "unary, bulk or assemble")
	calls := flag.Int("calls", 20000, "unary: timed calls")
	messages := flag.Int("messages", 512, "bulk: timed messages")
	size := flag.Int("size", 64, "unary and bulk: message bytes")
	warmup := flag.Duration("warmup", 300*time.Millisecond, "assemble: untimed warm-up")
	measure := flag.Duration("measure", 1500*time.Millisecond, "assemble: measured time")
	flag.Parse()

	var err error
	switch *mode {
	case "unary":
		err = unary(*calls, *size)
	case "bulk":
		err = bulk(*messages, *size)
	case "assemble":
		err = assembleMode(*warmup, *measure)
	default:
		err = errors.New("usage: bench -mode unary|bulk|assemble (see the package comment)")
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
}
