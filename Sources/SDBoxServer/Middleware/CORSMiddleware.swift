import Appliance
import HTTPTypes
import Hummingbird

/// Lets web pages of the origins in `cors.allowOrigins` call the API from a browser: preflights are
/// answered at once (204, no key needed: a browser sends none with them), and every answer to an allowed
/// origin, errors included, carries `Access-Control-Allow-Origin` and the headers a client reads
/// (`taskId`, `Task-Id`, `Retry-After`, `Content-Range`). Keys travel in headers, never cookies, so
/// credentials mode is not offered.
struct CORSMiddleware<Context: RequestContext>: RouterMiddleware {
    let settings: CORSSettings

    static var allowedMethods: String { "GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS" }
    static var allowedHeaders: String {
        "Authorization, Content-Type, X-API-Key, Token, taskId, Request-Type, Task-Flag, X-SD-Model, X-Callback-URL, username"
    }
    static var exposedHeaders: String { "taskId, Task-Id, Retry-After, Content-Range" }

    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        guard let origin = request.headers[.origin], let allowed = settings.allowedOrigin(origin) else {
            return try await next(request, context)
        }
        if request.method == .options, request.headers[.accessControlRequestMethod] != nil {
            var headers: HTTPFields = [
                .accessControlAllowOrigin: allowed, .accessControlAllowMethods: Self.allowedMethods,
                .accessControlAllowHeaders: request.headers[.accessControlRequestHeaders] ?? Self.allowedHeaders,
                .accessControlMaxAge: "600",
            ]
            if allowed != "*" { headers[.vary] = "Origin" }
            return Response(status: .noContent, headers: headers)
        }
        var response: Response
        do {
            response = try await next(request, context)
        } catch let error as any HTTPResponseError {
            response = try error.response(from: request, context: context)
        }
        response.headers[.accessControlAllowOrigin] = allowed
        response.headers[.accessControlExposeHeaders] = Self.exposedHeaders
        if allowed != "*" { response.headers[.vary] = "Origin" }
        return response
    }
}
