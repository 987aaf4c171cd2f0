import Appliance
import ArgumentParser
import Foundation
import SDBoxCore
import Storage

/// `sdbox users`: adds, lists and removes the users who sign in with a password (`POST /login`), in a
/// data folder's database (the server need not stop). A password is read from standard input, never
/// from the command line, where other users of the box could read it.
struct Users: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Manage users who sign in with a password.", subcommands: [Add.self, List.self, Remove.self]
    )

    struct Add: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Add a user, or set a user's password and role; the password is read from standard input."
        )
        @OptionGroup var location: Keys.Location
        @Argument(help: "The user's name (the <user> of its images and tasks).")
        var name: String
        @Option(help: "admin (models, pools, keys, all tasks) or user (generate; own tasks only).")
        var role: Role = .user

        func run() async throws {
            if isatty(STDIN_FILENO) == 1 { FileHandle.standardError.write(Data("password for \(name): ".utf8)) }
            let echo = TerminalEcho(off: isatty(STDIN_FILENO) == 1)
            let password = readLine(strippingNewline: true) ?? ""
            echo.restore()
            do {
                try await location.withStores { _, accounts in try await accounts.save(name: name, role: role, password: password) }
            } catch let error as APIError {
                throw ValidationError(error.detail)
            }
            print("\(role.rawValue) user \(name) can sign in with POST /login")
        }
    }

    struct List: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "List users (never their passwords).")
        @OptionGroup var location: Keys.Location

        func run() async throws {
            for user in try await location.withStores({ _, accounts in try await accounts.store.users() }) {
                print("\(user.name)  \(user.role.rawValue)  created \(user.createdAt.ISO8601Format())")
            }
        }
    }

    struct Remove: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Remove a user and end its sessions.")
        @OptionGroup var location: Keys.Location
        @Argument(help: "The user's name.")
        var name: String

        func run() async throws {
            guard try await location.withStores({ _, accounts in try await accounts.store.removeUser(named: name) }) else {
                throw ValidationError("no user named \(name)")
            }
            print("removed \(name)")
        }
    }
}

/// Turns the terminal's echo off while a password is typed, and back on.
struct TerminalEcho {
    let saved: termios?

    init(off: Bool) {
        var settings = termios()
        guard off, tcgetattr(STDIN_FILENO, &settings) == 0 else {
            saved = nil
            return
        }
        saved = settings
        settings.c_lflag &= ~tcflag_t(ECHO)
        tcsetattr(STDIN_FILENO, TCSANOW, &settings)
    }

    func restore() {
        guard var settings = saved else { return }
        tcsetattr(STDIN_FILENO, TCSANOW, &settings)
        FileHandle.standardError.write(Data("\n".utf8))
    }
}
