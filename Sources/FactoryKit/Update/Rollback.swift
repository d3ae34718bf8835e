import GitKit

/// What it takes to undo the code part of an update.
struct Rollback {
    let repository: Repository
    let original: Head
    let branch: String
    let branchTipBefore: ObjectID?

    func perform() throws {
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
        if let before = branchTipBefore {
            try repository.setReference("refs/heads/\(branch)", to: before, message: "factoryctl: roll back")
        } else {
            try repository.deleteReference("refs/heads/\(branch)")
        }
    }
}
