using System.Runtime.Intrinsics.X86;
using Lutra.Core.Quants;

namespace Lutra.Core.Kernels;

public static unsafe partial class KernelTable
{
    /// <summary>
    /// The 16-row interleaved Q4_0/Q8_0 kernels need AVX-VNNI (256-bit, VEX) on top of AVX2; they use no 512-bit
    /// instruction, so they serve the AVX2 and the AVX-512 paths alike.
    /// </summary>
    static partial void AddInterleavedKernels(List<MatVecKernel> kernels, GgmlType weightType, InstructionSet isa)
    {
        if (isa < InstructionSet.Avx2 || !AvxVnni.IsSupported || !Avx2.IsSupported)
            return;
        if (weightType == GgmlType.Q4_0)
            kernels.Add(new Q4_0InterleavedMatVec(isa));
        else if (weightType == GgmlType.Q8_0)
            kernels.Add(new Q8_0InterleavedMatVec(isa));
    }
}
