"""The gRPC TaskService (``taskservice.proto``): the REST API's task operations over gRPC, on the same services.

``server`` builds the grpc.aio server (with the standard health and reflection
services), ``service`` implements the RPCs on the task service and store the
REST routes use, ``convert`` turns rows and requests into messages and back,
and ``errors`` maps ops-core's errors to status codes. The ``taskservice_pb2*``
modules are generated from the ``.proto`` (see its header) and committed.
"""
