"""The Open Inference Protocol's gRPC definition (grpc_predict_v2.proto) and the code grpcio-tools
generates from it (`make generate-grpc`; never edited by hand)."""
