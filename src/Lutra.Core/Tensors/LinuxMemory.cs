using System.Runtime.InteropServices;

namespace Lutra.Core.Tensors;

/// <summary>
/// The libc calls Lutra makes about memory pages (Linux only; callers check <see cref="OperatingSystem.IsLinux"/>):
/// dropping mapped pages the process no longer needs, and asking for transparent huge pages.
/// </summary>
public static partial class LinuxMemory
{
    private const int MadviseDontNeed = 4; // MADV_DONTNEED in Linux's mman-common.h
    private const int MadviseHugePage = 14; // MADV_HUGEPAGE

    /// <summary>madvise(MADV_DONTNEED) on a page-aligned range; false when the call is unavailable or refused.</summary>
    public static bool DontNeed(nuint address, nuint length) => Advise(address, length, MadviseDontNeed);

    /// <summary>
    /// madvise(MADV_HUGEPAGE) on a page-aligned range: with transparent huge pages in "madvise" mode (a common
    /// default) the range is then backed by 2 MiB pages where the kernel can; false when refused or unavailable.
    /// </summary>
    public static bool HugePages(nuint address, nuint length) => Advise(address, length, MadviseHugePage);

    private static bool Advise(nuint address, nuint length, int advice)
    {
        try
        {
            return Madvise(address, length, advice) == 0;
        }
        catch (Exception e) when (e is DllNotFoundException or EntryPointNotFoundException)
        {
            return false; // an unusual libc: the advice is simply not given
        }
    }

    [LibraryImport("libc", EntryPoint = "madvise")]
    private static partial int Madvise(nuint address, nuint length, int advice);
}
