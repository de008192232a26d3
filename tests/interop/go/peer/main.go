// Command peer is a stock Go DRPC peer for weir's interop tests.
//
//	peer -mode server -addr 127.0.0.1:0
//	    serves the rpcs below and prints "listening <addr>" once it accepts connections.
//	peer -mode client -addr HOST:PORT -case NAME
//	    runs one case against a server with the same rpcs, checks every result exactly,
//	    prints "PASS NAME" and exits 0, or prints "FAIL NAME: why" and exits 1.
//
// Messages are raw bytes (see raw below), so no protobuf code generation is needed. Both sides
// accept packets up to maxPacket so that the 16 MiB case fits (Go's default limit is 4 MiB).
package main

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"sort"
	"strings"
	"time"

	"storj.io/drpc"
	"storj.io/drpc/drpcconn"
	"storj.io/drpc/drpcerr"
	"storj.io/drpc/drpcmanager"
	"storj.io/drpc/drpcmetadata"
	"storj.io/drpc/drpcmux"
	"storj.io/drpc/drpcserver"
	"storj.io/drpc/drpcwire"
)

const (
	maxPacket = 32 << 20

	rpcEcho         = "/interop.Interop/Echo"
	rpcFail         = "/interop.Interop/Fail"
	rpcServerStream = "/interop.Interop/ServerStream"
	rpcClientStream = "/interop.Interop/ClientStream"
	rpcBidi         = "/interop.Interop/Bidi"
	rpcMetadata     = "/interop.Interop/Metadata"
	rpcHold         = "/interop.Interop/Hold"
	rpcCancelReport = "/interop.Interop/CancelReport"
	rpcUnknown      = "/interop.Interop/Nope"

	// Fail answers with this code and "boom: " followed by the request.
	failCode = 4242424242424
)

// raw is a drpc.Encoding that passes bytes through: messages are *[]byte.
type raw struct{}

func (raw) Marshal(msg drpc.Message) ([]byte, error) { return *msg.(*[]byte), nil }

func (raw) Unmarshal(buf []byte, msg drpc.Message) error {
	// buf belongs to the stream and is reused: copy it.
	*msg.(*[]byte) = append([]byte{}, buf...)
	return nil
}

var enc raw

func options() drpcmanager.Options {
	return drpcmanager.Options{
		Reader:     drpcwire.ReaderOptions{MaximumBufferSize: maxPacket},
		SoftCancel: true,
	}
}

func main() {
	mode := flag.String("mode", "", "server or client")
	addr := flag.String("addr", "127.0.0.1:0", "address to listen on (server) or dial (client)")
	name := flag.String("case", "", "client: the case to run")
	flag.Parse()

	switch *mode {
	case "server":
		if err := serve(*addr); err != nil {
			fmt.Fprintln(os.Stderr, "server:", err)
			os.Exit(1)
		}
	case "client":
		if err := runCase(*addr, *name); err != nil {
			fmt.Printf("FAIL %s: %v\n", *name, err)
			os.Exit(1)
		}
		fmt.Printf("PASS %s\n", *name)
	default:
		fmt.Fprintln(os.Stderr, "usage: peer -mode server|client -addr ADDR [-case NAME]")
		os.Exit(2)
	}
}

// ---- server ------------------------------------------------------------------------------------

type service struct {
	// What the last Hold stream saw, for CancelReport.
	holds chan string
}

func (s *service) Echo(ctx context.Context, in *[]byte) (*[]byte, error) { return in, nil }

func (s *service) Fail(ctx context.Context, in *[]byte) (*[]byte, error) {
	return nil, drpcerr.WithCode(errors.New("boom: "+string(*in)), failCode)
}

// ServerStream: the request is a count n; the reply is n messages "0", "1", ...
func (s *service) ServerStream(in *[]byte, stream drpc.Stream) error {
	var n int
	if _, err := fmt.Sscan(string(*in), &n); err != nil {
		return err
	}
	for i := 0; i < n; i++ {
		msg := []byte(fmt.Sprint(i))
		if err := stream.MsgSend(&msg, enc); err != nil {
			return err
		}
	}
	return nil
}

// ClientStream: replies "<count>:<messages joined by ,>" once the client closes its side.
func (s *service) ClientStream(stream drpc.Stream) error {
	var parts []string
	for {
		var msg []byte
		err := stream.MsgRecv(&msg, enc)
		if err == io.EOF {
			break
		} else if err != nil {
			return err
		}
		parts = append(parts, string(msg))
	}
	reply := []byte(fmt.Sprintf("%d:%s", len(parts), strings.Join(parts, ",")))
	return stream.MsgSend(&reply, enc)
}

// Bidi: echoes each message as it arrives, until the client closes its side.
func (s *service) Bidi(stream drpc.Stream) error {
	for {
		var msg []byte
		err := stream.MsgRecv(&msg, enc)
		if err == io.EOF {
			return nil
		} else if err != nil {
			return err
		}
		if err := stream.MsgSend(&msg, enc); err != nil {
			return err
		}
	}
}

// Metadata: replies with the invoke metadata as sorted "key=value" lines joined by "\n".
func (s *service) Metadata(ctx context.Context, in *[]byte) (*[]byte, error) {
	md, _ := drpcmetadata.Get(ctx)
	reply := []byte(formatMetadata(md))
	return &reply, nil
}

// Hold: echoes like Bidi; when the stream ends, reports "received N, then canceled" (or the
// error it ended with) to CancelReport.
func (s *service) Hold(stream drpc.Stream) error {
	n := 0
	for {
		var msg []byte
		err := stream.MsgRecv(&msg, enc)
		if err == nil {
			// Counted on receipt: the client cancels as soon as it has the echo, which can
			// land before MsgSend returns.
			n++
			err = stream.MsgSend(&msg, enc)
		}
		if err != nil {
			why := err.Error()
			if errors.Is(err, context.Canceled) {
				why = "canceled"
			}
			s.holds <- fmt.Sprintf("received %d, then %s", n, why)
			return err
		}
	}
}

// CancelReport: what the last Hold stream saw, waiting for it up to 5 s.
func (s *service) CancelReport(ctx context.Context, in *[]byte) (*[]byte, error) {
	select {
	case report := <-s.holds:
		reply := []byte(report)
		return &reply, nil
	case <-time.After(5 * time.Second):
		return nil, errors.New("no Hold stream ended")
	}
}

// description tells drpcmux the rpcs, as generated code would.
type description struct{}

type method struct {
	rpc      string
	receiver drpc.Receiver
	method   interface{}
}

func unary(f func(*service, context.Context, *[]byte) (*[]byte, error)) drpc.Receiver {
	return func(srv interface{}, ctx context.Context, in1, _ interface{}) (drpc.Message, error) {
		return f(srv.(*service), ctx, in1.(*[]byte))
	}
}

func streaming(f func(*service, drpc.Stream) error) drpc.Receiver {
	return func(srv interface{}, _ context.Context, in1, _ interface{}) (drpc.Message, error) {
		return nil, f(srv.(*service), in1.(drpc.Stream))
	}
}

var methods = []method{
	{rpcEcho, unary((*service).Echo), (*service).Echo},
	{rpcFail, unary((*service).Fail), (*service).Fail},
	{rpcMetadata, unary((*service).Metadata), (*service).Metadata},
	{rpcCancelReport, unary((*service).CancelReport), (*service).CancelReport},
	{rpcServerStream, func(srv interface{}, _ context.Context, in1, in2 interface{}) (drpc.Message, error) {
		return nil, srv.(*service).ServerStream(in1.(*[]byte), in2.(drpc.Stream))
	}, (*service).ServerStream},
	{rpcClientStream, streaming((*service).ClientStream), (*service).ClientStream},
	{rpcBidi, streaming((*service).Bidi), (*service).Bidi},
	{rpcHold, streaming((*service).Hold), (*service).Hold},
}

func (description) NumMethods() int { return len(methods) }

func (description) Method(n int) (string, drpc.Encoding, drpc.Receiver, interface{}, bool) {
	if n < 0 || n >= len(methods) {
		return "", nil, nil, nil, false
	}
	m := methods[n]
	return m.rpc, enc, m.receiver, m.method, true
}

func serve(addr string) error {
	mux := drpcmux.New()
	if err := mux.Register(&service{holds: make(chan string, 16)}, description{}); err != nil {
		return err
	}
	lis, err := net.Listen("tcp", addr)
	if err != nil {
		return err
	}
	fmt.Printf("listening %s\n", lis.Addr())
	srv := drpcserver.NewWithOptions(mux, drpcserver.Options{
		Manager: options(),
		Log:     func(err error) { fmt.Fprintln(os.Stderr, "server:", err) },
	})
	return srv.Serve(context.Background(), lis)
}

// ---- client ------------------------------------------------------------------------------------

// pattern is n bytes that differ from their neighbours, the same on both sides:
// byte i is (i*31 + i>>8) mod 251.
func pattern(n int) []byte {
	out := make([]byte, n)
	for i := range out {
		out[i] = byte((i*31 + i>>8) % 251)
	}
	return out
}

func formatMetadata(md map[string]string) string {
	lines := make([]string, 0, len(md))
	for k, v := range md {
		lines = append(lines, k+"="+v)
	}
	sort.Strings(lines)
	return strings.Join(lines, "\n")
}

func invoke(ctx context.Context, conn *drpcconn.Conn, rpc string, in []byte) ([]byte, error) {
	var out []byte
	err := conn.Invoke(ctx, rpc, enc, &in, &out)
	return out, err
}

func expectEcho(ctx context.Context, conn *drpcconn.Conn, in []byte) error {
	out, err := invoke(ctx, conn, rpcEcho, in)
	if err != nil {
		return err
	}
	if !bytes.Equal(out, in) {
		return fmt.Errorf("echo of %d bytes came back as %d different bytes", len(in), len(out))
	}
	return nil
}

func expectError(err error, code uint64, message string) error {
	if err == nil {
		return fmt.Errorf("want error (code %d) %q, got a reply", code, message)
	}
	if got := drpcerr.Code(err); got != code || err.Error() != message {
		return fmt.Errorf("want error (code %d) %q, got (code %d) %q", code, message, got, err.Error())
	}
	return nil
}

func runCase(addr, name string) error {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	tcp, err := net.Dial("tcp", addr)
	if err != nil {
		return err
	}
	conn := drpcconn.NewWithOptions(tcp, drpcconn.Options{Manager: options()})
	defer conn.Close()

	switch name {
	case "unary":
		return expectEcho(ctx, conn, []byte("hello from go"))
	case "empty":
		return expectEcho(ctx, conn, []byte{})
	case "error":
		_, err := invoke(ctx, conn, rpcFail, []byte("go"))
		if err := expectError(err, failCode, "boom: go"); err != nil {
			return err
		}
		// The connection still works after an error.
		return expectEcho(ctx, conn, []byte("after error"))
	case "server-stream":
		return serverStream(ctx, conn)
	case "client-stream":
		return clientStream(ctx, conn)
	case "bidi":
		return bidi(ctx, conn)
	case "metadata":
		md := map[string]string{"tenant": "acme", "trace": "ü-1", "empty": ""}
		out, err := invoke(drpcmetadata.AddPairs(ctx, md), conn, rpcMetadata, nil)
		if err != nil {
			return err
		}
		if want := formatMetadata(md); string(out) != want {
			return fmt.Errorf("metadata came back as %q, want %q", out, want)
		}
		return nil
	case "large-1m":
		return expectEcho(ctx, conn, pattern(1<<20))
	case "large-16m":
		return expectEcho(ctx, conn, pattern(16<<20))
	case "cancel":
		return cancelHold(ctx, conn, 100*time.Millisecond)
	case "cancel-then-call":
		return cancelHold(ctx, conn, 0)
	case "unknown":
		_, err := invoke(ctx, conn, rpcUnknown, []byte("x"))
		if err := expectError(err, 0, `protocol error: unknown rpc: "`+rpcUnknown+`"`); err != nil {
			return err
		}
		return expectEcho(ctx, conn, []byte("after unknown"))
	default:
		return fmt.Errorf("unknown case %q", name)
	}
}

func recvAll(stream drpc.Stream) ([]string, error) {
	var got []string
	for {
		var msg []byte
		err := stream.MsgRecv(&msg, enc)
		if err == io.EOF {
			return got, nil
		} else if err != nil {
			return got, err
		}
		got = append(got, string(msg))
	}
}

func serverStream(ctx context.Context, conn *drpcconn.Conn) error {
	stream, err := conn.NewStream(ctx, rpcServerStream, enc)
	if err != nil {
		return err
	}
	defer stream.Close()
	count := []byte("5")
	if err := stream.MsgSend(&count, enc); err != nil {
		return err
	}
	if err := stream.CloseSend(); err != nil {
		return err
	}
	got, err := recvAll(stream)
	if err != nil {
		return err
	}
	if want := "0,1,2,3,4"; strings.Join(got, ",") != want {
		return fmt.Errorf("got %q, want %s", got, want)
	}
	return nil
}

func clientStream(ctx context.Context, conn *drpcconn.Conn) error {
	stream, err := conn.NewStream(ctx, rpcClientStream, enc)
	if err != nil {
		return err
	}
	defer stream.Close()
	for _, part := range []string{"one", "two", "", "three"} {
		msg := []byte(part)
		if err := stream.MsgSend(&msg, enc); err != nil {
			return err
		}
	}
	if err := stream.CloseSend(); err != nil {
		return err
	}
	got, err := recvAll(stream)
	if err != nil {
		return err
	}
	if len(got) != 1 || got[0] != "4:one,two,,three" {
		return fmt.Errorf("got %q, want [\"4:one,two,,three\"]", got)
	}
	return nil
}

func bidi(ctx context.Context, conn *drpcconn.Conn) error {
	stream, err := conn.NewStream(ctx, rpcBidi, enc)
	if err != nil {
		return err
	}
	defer stream.Close()
	for i := 0; i < 10; i++ {
		msg := []byte(fmt.Sprintf("ping %d", i))
		if err := stream.MsgSend(&msg, enc); err != nil {
			return err
		}
		var back []byte
		if err := stream.MsgRecv(&back, enc); err != nil {
			return err
		}
		if !bytes.Equal(back, msg) {
			return fmt.Errorf("sent %q, got %q", msg, back)
		}
	}
	if err := stream.CloseSend(); err != nil {
		return err
	}
	if got, err := recvAll(stream); err != nil || len(got) != 0 {
		return fmt.Errorf("after CloseSend: got %q, %v; want nothing and EOF", got, err)
	}
	return nil
}

// cancelHold exchanges two messages on a Hold stream, cancels it (a soft cancel: a Cancel frame,
// the connection stays), waits pause, then checks the connection still works and what the server
// saw. With no pause the Cancel and the next Invoke usually reach the server in one read.
func cancelHold(ctx context.Context, conn *drpcconn.Conn, pause time.Duration) error {
	sctx, cancel := context.WithCancel(ctx)
	stream, err := conn.NewStream(sctx, rpcHold, enc)
	if err != nil {
		cancel()
		return err
	}
	for i := 0; i < 2; i++ {
		msg := []byte(fmt.Sprintf("hold %d", i))
		var back []byte
		if err := stream.MsgSend(&msg, enc); err != nil {
			cancel()
			return err
		}
		if err := stream.MsgRecv(&back, enc); err != nil {
			cancel()
			return err
		}
	}
	cancel()
	var msg []byte
	if err := stream.MsgRecv(&msg, enc); !errors.Is(err, context.Canceled) {
		return fmt.Errorf("recv after cancel: got %v, want context.Canceled", err)
	}
	time.Sleep(pause)
	select {
	case <-conn.Closed():
		return errors.New("the soft cancel closed the connection")
	default:
	}
	if err := expectEcho(ctx, conn, []byte("after cancel")); err != nil {
		return err
	}
	report, err := invoke(ctx, conn, rpcCancelReport, nil)
	if err != nil {
		return err
	}
	if want := "received 2, then canceled"; string(report) != want {
		return fmt.Errorf("server saw %q, want %q", report, want)
	}
	return nil
}
