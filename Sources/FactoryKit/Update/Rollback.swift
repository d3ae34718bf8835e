import GitKit

/// What it takes to undo the code part of an update.
struct Rollback {
    let repository: Repository
    let original: Head
    let branch: String
    let branchTipBefore: ObjectID?
    /// The releases layout: the undo is a swap of `current` back, no checkout.
    var swap: ReleaseSwap?

    func perform() throws {
        if let swap {
            try swap.undo()
            if case .branch(let name, let commit) = original {
                try repository.setHead(branch: name)
                try repository.setReference("refs/heads/\(name)", to: commit, message: "factoryctl: roll back")
                if name == branch { return }
            }
            try restoreBranch()
            return
        }
        switch original {
        case .branch(let name, let commit):
            try repository.setHead(branch: name)
            try repository.resetHard(to: commit)
            if name == branch { return }
        case .detached(let commit):
            try repository.setHeadDetached(commit)
            try repository.resetHard(to: commit)
        case .unborn:
            return
        }
        try restoreBranch()
    }

    private func restoreBranch() throws {
        if let before = branchTipBefore {
            try repository.setReference("refs/heads/\(branch)", to: before, message: "factoryctl: roll back")
        } else {
            try repository.deleteReference("refs/heads/\(branch)")
        }
    }
}

/// The releases layout's undo: `current` back to the release that was live before.
struct ReleaseSwap {
    let layout: ReleasesLayout
    /// The release the update made (or was making) live, and the one to go back to.
    let release: String
    let previous: String

    func undo() throws {
        guard layout.liveName != previous else { return }
        guard layout.release(previous)?.complete == true else {
            throw FactoryError.failed("the previous release \(previous) is gone or incomplete; \(layout.current) still names \(layout.liveName ?? "nothing")")
        }
        try layout.swap(to: previous)
    }
}
