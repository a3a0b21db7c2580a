// A stand-in for node-driver-registrar, for hack/local-cluster.sh: node-driver-registrar is not
// served by the Go module proxy, so this tiny program does the same kubelet handshake for real.
//
// It asks the CSI driver its name (Identity.GetPluginInfo on --csi-address), then serves the
// kubelet's plugin-registration API (pluginregistration.v1 Registration) on
// <--plugin-registration-path>/<driver>-reg.sock: GetInfo answers type CSIPlugin, the driver
// name, the socket path the kubelet dials (--kubelet-registration-path) and version 1.0.0, and
// NotifyRegistrationStatus records the kubelet's verdict. --http-endpoint serves /healthz: 200
// once the kubelet accepted the driver and the registration socket is still there.
//
// It takes the same flags as the upstream registrar that the chart passes, so the chart's
// DaemonSet runs it unchanged (only the image differs). Not a replacement for real clusters:
// the chart keeps the upstream image as its default.
package main

import (
	"context"
	"flag"
	"fmt"
	"log"
	"net"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	csi "github.com/container-storage-interface/spec/lib/go/csi"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	registerapi "k8s.io/kubelet/pkg/apis/pluginregistration/v1"
)

type registrar struct {
	registerapi.UnimplementedRegistrationServer
	name, endpoint string

	mu         sync.Mutex
	registered bool
	lastError  string
}

func (r *registrar) GetInfo(context.Context, *registerapi.InfoRequest) (*registerapi.PluginInfo, error) {
	log.Printf("GetInfo from the kubelet: %s at %s", r.name, r.endpoint)
	return &registerapi.PluginInfo{
		Type:              registerapi.CSIPlugin,
		Name:              r.name,
		Endpoint:          r.endpoint,
		SupportedVersions: []string{"1.0.0"},
	}, nil
}

func (r *registrar) NotifyRegistrationStatus(_ context.Context, s *registerapi.RegistrationStatus) (*registerapi.RegistrationStatusResponse, error) {
	r.mu.Lock()
	r.registered, r.lastError = s.PluginRegistered, s.Error
	r.mu.Unlock()
	if s.PluginRegistered {
		log.Printf("the kubelet registered %s", r.name)
	} else {
		// The upstream registrar exits here, so that the kubelet restarts it and the handshake
		// happens again; do the same.
		log.Fatalf("the kubelet refused %s: %s", r.name, s.Error)
	}
	return &registerapi.RegistrationStatusResponse{}, nil
}

// driverName dials the CSI socket until the driver answers GetPluginInfo.
func driverName(address string, timeout time.Duration) (string, error) {
	target := address
	if !strings.HasPrefix(target, "unix:") {
		target = "unix://" + target
	}
	conn, err := grpc.NewClient(target, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return "", err
	}
	defer conn.Close()
	deadline := time.Now().Add(timeout)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		info, err := csi.NewIdentityClient(conn).GetPluginInfo(ctx, &csi.GetPluginInfoRequest{})
		cancel()
		if err == nil {
			return info.GetName(), nil
		}
		if time.Now().After(deadline) {
			return "", fmt.Errorf("GetPluginInfo on %s: %w", address, err)
		}
		log.Printf("waiting for the CSI driver at %s: %v", address, err)
		time.Sleep(time.Second)
	}
}

func main() {
	csiAddress := flag.String("csi-address", "/csi/csi.sock", "the CSI driver's socket, as this container sees it")
	kubeletPath := flag.String("kubelet-registration-path", "", "the CSI socket's path on the node, as the kubelet sees it")
	registrationDir := flag.String("plugin-registration-path", "/registration", "the kubelet's plugins_registry directory, as this container sees it")
	httpEndpoint := flag.String("http-endpoint", "", "address of the /healthz endpoint (empty: none)")
	driverOverride := flag.String("driver-name", "", "the driver's name (empty: ask the driver)")
	timeout := flag.Duration("timeout", 10*time.Minute, "how long to wait for the CSI driver")
	flag.Int("v", 0, "log verbosity (accepted for compatibility; ignored)")
	flag.Parse()
	log.SetFlags(log.LstdFlags | log.Lmicroseconds)
	if *kubeletPath == "" {
		log.Fatal("--kubelet-registration-path is required")
	}

	name := *driverOverride
	if name == "" {
		var err error
		if name, err = driverName(*csiAddress, *timeout); err != nil {
			log.Fatal(err)
		}
	}
	r := &registrar{name: name, endpoint: *kubeletPath}

	socket := filepath.Join(*registrationDir, name+"-reg.sock")
	if err := os.Remove(socket); err != nil && !os.IsNotExist(err) {
		log.Fatalf("removing the stale %s: %v", socket, err)
	}
	listener, err := net.Listen("unix", socket)
	if err != nil {
		log.Fatalf("listening on %s: %v", socket, err)
	}
	server := grpc.NewServer()
	registerapi.RegisterRegistrationServer(server, r)
	log.Printf("serving the registration of %s (endpoint %s) on %s", name, *kubeletPath, socket)

	if *httpEndpoint != "" {
		mux := http.NewServeMux()
		mux.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) {
			r.mu.Lock()
			registered, lastError := r.registered, r.lastError
			r.mu.Unlock()
			if _, err := os.Stat(socket); err != nil {
				http.Error(w, "registration socket: "+err.Error(), http.StatusServiceUnavailable)
				return
			}
			if !registered {
				http.Error(w, "not registered by the kubelet yet "+lastError, http.StatusServiceUnavailable)
				return
			}
			fmt.Fprintln(w, "ok")
		})
		go func() { log.Fatal(http.ListenAndServe(*httpEndpoint, mux)) }()
	}

	signals := make(chan os.Signal, 1)
	signal.Notify(signals, syscall.SIGTERM, syscall.SIGINT)
	go func() {
		s := <-signals
		log.Printf("%v: removing %s", s, socket)
		server.Stop()
		os.Remove(socket)
		os.Exit(0)
	}()
	if err := server.Serve(listener); err != nil {
		log.Fatal(err)
	}
}
