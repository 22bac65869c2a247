using System.Runtime.Intrinsics.X86;
using Lutra.Core.Quants;

namespace Lutra.Core.Kernels;

public static unsafe partial class KernelTable
{
    /// <summary>
    /// The bit-serial LUT kernels for Q4_0, Q4_1 and Q2_K: AVX-512 BW at <see cref="InstructionSet.Avx512"/>, AVX2 at
    /// <see cref="InstructionSet.Avx2"/>, the
    /// Vector128 form (SSSE3 pair sums on x86, portable elsewhere) at <see cref="InstructionSet.Vector128"/>.
    /// </summary>
    static partial void AddBitSerialLutKernels(List<MatVecKernel> kernels, GgmlType weightType, InstructionSet isa)
    {
        if (!BitSerialLutMatVec.Handles(weightType))
            return;
        switch (isa)
        {
            case InstructionSet.Avx512 when BitSerialLutAvx512.IsSupported:
                kernels.Add(new BitSerialLutAvx512(weightType));
                break;
            case InstructionSet.Avx2 when BitSerialLutAvx2.IsSupported:
                kernels.Add(new BitSerialLutAvx2(weightType));
                break;
            case InstructionSet.Vector128 when Ssse3.IsSupported:
                kernels.Add(new BitSerialLutVector128<Ssse3PairSum>(weightType));
                break;
            case InstructionSet.Vector128:
                kernels.Add(new BitSerialLutVector128<PortablePairSum>(weightType));
                break;
        }
    }
}
