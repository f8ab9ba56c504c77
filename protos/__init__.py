"""The gRPC wire format: `stackrl.proto`, its generated modules, and `codec`, the one layer over them."""
