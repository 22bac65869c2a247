using System.Runtime.Intrinsics.X86;
using Lutra.Core.Quants;

namespace Lutra.Core.Kernels;

public static unsafe partial class KernelTable
{
    /// <summary>
    /// The 16-row interleaved kernels: Q4_0, Q4_1 and Q8_0 on the AVX2 and AVX-512 paths (Q8_0 with AVX-VNNI where the
    /// CPU has the 256-bit VEX form, else by sign transfer onto vpmaddubsw); TQ2_0, and TQ1_0 converted to TQ2_0's tiles, on AVX2 and AVX-512;
    /// F16 and BF16 on AVX2 and AVX-512; Q5_0 and Q5_1 (with VBMI), Q4_K, Q5_K, Q6_K, IQ4_NL, IQ4_XS, Q2_K and Q3_K (the last two with GFNI) on AVX-512.
    /// </summary>
    static partial void AddInterleavedKernels(List<MatVecKernel> kernels, GgmlType weightType, InstructionSet isa)
    {
        if (weightType == GgmlType.Q4_0 && Q4_0InterleavedMatVec.IsSupported(isa))
            kernels.Add(new Q4_0InterleavedMatVec(isa));
        else if (weightType == GgmlType.Q4_1 && Q4_1InterleavedMatVec.IsSupported(isa))
            kernels.Add(new Q4_1InterleavedMatVec(isa));
        else if (weightType == GgmlType.Q5_0 && isa == InstructionSet.Avx512 && Q5_0InterleavedMatVec.IsSupported)
            kernels.Add(new Q5_0InterleavedMatVec());
        else if (weightType == GgmlType.Q5_1 && isa == InstructionSet.Avx512 && Q5_1InterleavedMatVec.IsSupported)
            kernels.Add(new Q5_1InterleavedMatVec());
        else if (weightType == GgmlType.Q8_0 && Q8_0InterleavedMatVec.IsSupported(isa, AvxVnni.IsSupported))
            kernels.Add(new Q8_0InterleavedMatVec(isa));
        else if (weightType == GgmlType.F16 && F16InterleavedMatVec.IsSupportedAt(isa))
        {
            // The scaled tiles first: the same sums with a cheaper widening, for every matrix whose weights are below 64.
            kernels.Add(new ScaledF16InterleavedMatVec(isa));
            kernels.Add(new F16InterleavedMatVec(isa));
        }
        else if (weightType == GgmlType.BF16 && BF16InterleavedMatVec.IsSupportedAt(isa))
            kernels.Add(new BF16InterleavedMatVec(isa));
        else if (weightType == GgmlType.Q4_K && isa == InstructionSet.Avx512 && Q4_KInterleavedMatVec.IsSupported)
            kernels.Add(new Q4_KInterleavedMatVec());
        else if (weightType == GgmlType.Q5_K && isa == InstructionSet.Avx512 && Q5_KInterleavedMatVec.IsSupported)
            kernels.Add(new Q5_KInterleavedMatVec());
        else if (weightType == GgmlType.Q6_K && isa == InstructionSet.Avx512 && Q6_KInterleavedMatVec.IsSupported)
            kernels.Add(new Q6_KInterleavedMatVec());
        else if (weightType == GgmlType.TQ2_0 && TQ2_0InterleavedMatVec.IsSupportedAt(isa))
            kernels.Add(new TQ2_0InterleavedMatVec(isa));
        else if (weightType == GgmlType.TQ1_0 && TQ2_0InterleavedMatVec.IsSupportedAt(isa))
            kernels.Add(new TQ1_0InterleavedMatVec(isa));
        else if (weightType == GgmlType.Q2_K && isa == InstructionSet.Avx512 && Q2_KInterleavedMatVec.IsSupported)
            kernels.Add(new Q2_KInterleavedMatVec());
        else if (weightType == GgmlType.Q3_K && isa == InstructionSet.Avx512 && Q3_KInterleavedMatVec.IsSupported)
            kernels.Add(new Q3_KInterleavedMatVec());
        else if (weightType == GgmlType.IQ4_NL && isa == InstructionSet.Avx512 && IQ4_NLInterleavedMatVec.IsSupported)
            kernels.Add(new IQ4_NLInterleavedMatVec());
        else if (weightType == GgmlType.IQ4_XS && isa == InstructionSet.Avx512 && IQ4_XSInterleavedMatVec.IsSupported)
            kernels.Add(new IQ4_XSInterleavedMatVec());
    }
}
